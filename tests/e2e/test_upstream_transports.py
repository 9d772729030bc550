"""Upstreams over the 2024-11-05 HTTP+SSE transport and WebSocket, and `transport: auto` finding SSE.

The fixture upstreams speak either era over either transport; the official SDK client calls
them through the gateway in both eras. A handshake-era upstream asks its questions mid-call
on the message stream (the gateway relays them); a stateless-era one answers
`input_required` (the gateway bridges), so `ask` covers both paths on each transport.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest
import pytest_asyncio
from mcp import Client, MCPError

from toolway.sessions.upstream import State, UpstreamConnection
from toolway.testing import RunningGateway, RunningHttpUpstream, http_upstream, running_gateway, wait_for_state
from toolway.testing.processes import start_http_upstream

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)

ERAS = ["legacy", "2026-07-28"]
# gateway name -> (fixture transport, fixture era, config transport)
UPSTREAMS: dict[str, tuple[Any, str, str]] = {
    "oldsse": ("sse", "handshake", "sse"),  # what real HTTP+SSE servers are: handshake era only
    "newsse": ("sse", "both", "sse"),
    "sock": ("ws", "both", "websocket"),
    "oldsock": ("ws", "handshake", "websocket"),
    "found": ("sse", "both", "auto"),  # configured at …/mcp: auto must find …/sse
}
SERVERS = list(UPSTREAMS)
FAST = {"reconnect": {"initial": 0.1, "max": 0.5}, "timeouts": {"connect": 5, "call": 10}}


def configured(name: str, upstream: RunningHttpUpstream) -> dict[str, Any]:
    transport = UPSTREAMS[name][2]
    url = upstream.url.removesuffix("/sse") + "/mcp" if transport == "auto" else upstream.url
    return {"name": name, "transport": transport, "url": url, **FAST}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstreams() -> AsyncIterator[dict[str, RunningHttpUpstream]]:
    started: dict[str, RunningHttpUpstream] = {}
    try:
        for name, (transport, era, _) in UPSTREAMS.items():
            started[name] = await start_http_upstream(name, transport=transport, era=era)
        yield started
    finally:
        for upstream in started.values():
            await upstream.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    upstreams: dict[str, RunningHttpUpstream], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    servers = [configured(name, upstream) for name, upstream in upstreams.items()]
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store")) as gw:
        yield gw


def connection(gateway: RunningGateway, name: str) -> UpstreamConnection:
    conn = gateway.gateway.manager.get(name)
    assert conn is not None
    return conn


async def answer_elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"answer": f"re: {params.message}"})


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def test_every_upstream_connected_in_the_expected_era(gateway: RunningGateway) -> None:
    for name, (_, era, _) in UPSTREAMS.items():
        conn = connection(gateway, name)
        assert conn.state is State.READY, (name, conn.last_error)
        assert conn.negotiated is not None
        assert conn.negotiated.era == ("handshake" if era == "handshake" else "modern"), name


async def test_auto_falls_back_to_sse_and_records_it(
    gateway: RunningGateway, upstreams: dict[str, RunningHttpUpstream]
) -> None:
    conn = connection(gateway, "found")
    assert conn.config.transport == "auto"
    assert conn.effective_transport == "sse"
    assert conn.endpoint() == upstreams["found"].url  # …/sse, not the configured …/mcp
    assert connection(gateway, "oldsse").effective_transport == "sse"
    assert connection(gateway, "sock").effective_transport == "websocket"


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_are_listed_and_called(gateway: RunningGateway, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        for server in SERVERS:
            assert {f"{server}__echo", f"{server}__ask", f"{server}__progress"} <= names
            assert text(await client.call_tool(f"{server}__whoami", {})) == server
            assert text(await client.call_tool(f"{server}__add", {"a": 2, "b": 3})) == "5"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_progress_reaches_the_caller(gateway: RunningGateway, mode: str, server: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(gateway.url, mode=mode) as client:
        result = await client.call_tool(f"{server}__progress", {"steps": 3}, progress_callback=on_progress)
    assert text(result) == f"{server} counted 3"
    assert seen == [(float(i), 3.0, f"{server} step {i}") for i in (1, 2, 3)]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_elicitation_completes(gateway: RunningGateway, mode: str, server: str) -> None:
    async with Client(gateway.url, mode=mode, elicitation_callback=answer_elicitation) as client:
        result = await client.call_tool(f"{server}__ask", {"question": "favourite colour?"})
    assert text(result) == f"{server} heard: re: favourite colour?"


@pytest.mark.parametrize(
    ("name", "transport", "configured_as"),
    [("sse", "sse", "sse"), ("ws", "ws", "websocket"), ("auto", "sse", "auto")],
)
async def test_killed_upstream_fails_fast_and_is_reconnected_after_restart(
    tmp_path: Path, name: str, transport: Any, configured_as: str
) -> None:
    upstream = await start_http_upstream(name, transport=transport, era="handshake")
    url = upstream.url.removesuffix("/sse") + "/mcp" if configured_as == "auto" else upstream.url
    servers = [{"name": name, "transport": configured_as, "url": url, **FAST}]
    try:
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            await wait_for_state(gw.gateway, name, State.READY)
            async with Client(gw.url, mode="legacy") as client:
                assert text(await client.call_tool(f"{name}__whoami", {})) == name
                await upstream.kill()
                await wait_for_state(gw.gateway, name, State.DOWN)  # the stream's end says so at once
                started = time.monotonic()
                with pytest.raises(MCPError) as info:
                    await client.call_tool(f"{name}__whoami", {})
                assert time.monotonic() - started < 1
                assert info.value.error.code == -32000
                assert f"'{name}'" in info.value.error.message

                upstream = await start_http_upstream(name, transport=transport, era="handshake", port=upstream.port)
                await wait_for_state(gw.gateway, name, State.READY)
                assert text(await client.call_tool(f"{name}__whoami", {})) == name
            assert connection(gw, name).effective_transport == ("websocket" if transport == "ws" else "sse")
    finally:
        await upstream.stop()


async def test_a_call_in_flight_fails_when_the_stream_dies(tmp_path: Path) -> None:
    async with http_upstream("doomed", transport="ws") as upstream:
        servers = [{"name": "doomed", "transport": "websocket", "url": upstream.url, **FAST}]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            async with Client(gw.url, mode="2026-07-28") as client:
                started = time.monotonic()
                with pytest.raises(MCPError) as info:
                    await client.call_tool("doomed__crash", {})
                assert time.monotonic() - started < 5  # not the 10 s call deadline
                assert info.value.error.code == -32000
                assert "doomed" in info.value.error.message
