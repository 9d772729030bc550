"""The official TypeScript SDK client over the 2024-11-05 HTTP+SSE transport (`SSEClientTransport`).

`GET <base>/sse` opens the stream (first event `endpoint`), `POST <base>/messages?session_id=…`
carries the client's messages; every message for the client (responses, progress, the
upstreams' requests, list_changed) comes down that one stream. The gateway fronts a 2026-07-28
HTTP upstream (bridged), a handshake-era HTTP one and a stdio one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from toolway.sessions.upstream import State
from toolway.testing import (
    RunningGateway,
    RunningHttpUpstream,
    http_upstream,
    running_gateway,
    stdio_upstream_command,
    wait_for_state,
)
from toolway.testing.ts_client import INSTALL_TIMEOUT_SECONDS, run_ts_client

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)

# The first test may run `npm ci` in the session fixture.
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("ts_client"),
    pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS + 60),
]

SERVERS = ["alpha", "beta", "gamma"]  # 2026-07-28 HTTP (bridged), handshake-era HTTP, stdio
TIMEOUT = 30.0  # the whole driver run
CALL_MS = 10_000  # one request step
PAGE_SIZE = 7  # small, so the merged tool list takes several pages
PROGRESS_DELAY = 0.1  # seconds between an upstream's progress notifications


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alpha() -> AsyncIterator[RunningHttpUpstream]:
    """Speaks both eras (the gateway picks 2026-07-28)."""
    async with http_upstream("alpha") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def beta() -> AsyncIterator[RunningHttpUpstream]:
    """Handshake era only."""
    async with http_upstream("beta", era="handshake") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    alpha: RunningHttpUpstream, beta: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    servers: list[dict[str, Any]] = [
        {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
        {"name": "beta", "transport": "streamable-http", "url": beta.url},
        {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")},
    ]
    async with running_gateway(
        servers=servers, store_dir=tmp_path_factory.mktemp("store"), limits={"page_size": PAGE_SIZE}
    ) as gw:
        for name in SERVERS:
            await wait_for_state(gw.gateway, name, State.READY, timeout=20)
        yield gw


def base(gateway: RunningGateway) -> str:
    return gateway.url.removesuffix("/mcp")


def sse_url(gateway: RunningGateway) -> str:
    return base(gateway) + "/sse"


async def run_sse(url: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return await run_ts_client(url, steps, timeout=TIMEOUT, transport="sse")


def ok(line: dict[str, Any]) -> Any:
    assert line.get("ok") is True, line
    return line["result"]


def text(result: dict[str, Any]) -> str:
    assert result.get("isError") is not True, result
    [block] = result["content"]
    return str(block["text"])


def call(name: str, arguments: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"op": "callTool", "name": name, "arguments": arguments or {}, "timeoutMs": CALL_MS, **extra}


def of_method(notifications: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [n for n in notifications if n["method"] == method]


async def test_connects_over_the_sse_endpoint(gateway: RunningGateway) -> None:
    init, pinged, errors = await run_sse(
        sse_url(gateway), [{"op": "init"}, {"op": "ping", "timeoutMs": CALL_MS}, {"op": "transportErrors"}]
    )
    connected = ok(init)
    assert connected["sessionId"]
    assert connected["endpoint"] == f"{base(gateway)}/messages?session_id={connected['sessionId']}"
    assert connected["protocolVersion"] == "2025-11-25"
    assert connected["capabilities"]["tools"] is not None
    assert ok(pinged) == {}
    assert ok(errors) == []


async def test_lists_every_tool_across_pages(gateway: RunningGateway) -> None:
    _, listed = await run_sse(sse_url(gateway), [{"op": "init"}, {"op": "listTools", "timeoutMs": CALL_MS}])
    [_, over_http] = await run_ts_client(
        gateway.url, [{"op": "init"}, {"op": "listTools", "timeoutMs": CALL_MS}], timeout=TIMEOUT
    )
    names = [t["name"] for t in ok(listed)["tools"]]
    assert ok(listed)["pages"] > 1
    assert len(names) == len(set(names))
    for server in SERVERS:
        for tool in ("whoami", "progress", "ask", "grow"):
            assert f"{server}__{tool}" in names
    assert sorted(names) == sorted(t["name"] for t in ok(over_http)["tools"])


@pytest.mark.parametrize("server", SERVERS)
async def test_whoami(gateway: RunningGateway, server: str) -> None:
    _, who = await run_sse(sse_url(gateway), [{"op": "init"}, call(f"{server}__whoami")])
    assert text(ok(who)) == server


@pytest.mark.parametrize("server", SERVERS)
async def test_progress_comes_down_the_stream(gateway: RunningGateway, server: str) -> None:
    # `delay` spaces the notifications out: the SDK dispatches a notification a microtask late but
    # a response at once, so progress read from the same chunk as the response loses its handler
    # (typescript-sdk issue #2580). The gateway writes them in order; the `notifications` tap,
    # which sees every message as it is read, shows that.
    _, counted, notifications = await run_sse(
        sse_url(gateway),
        [
            {"op": "init"},
            call(f"{server}__progress", {"steps": 3, "delay": PROGRESS_DELAY}, progress=True),
            {"op": "notifications"},
        ],
    )
    assert text(ok(counted)) == f"{server} counted 3"
    # Delivered to the call's onprogress: they carry the token the SDK put in that request.
    assert counted["progress"] == [{"progress": i, "total": 3, "message": f"{server} step {i}"} for i in (1, 2, 3)]
    progress = of_method(ok(notifications), "notifications/progress")
    assert [n["params"]["progress"] for n in progress] == [1, 2, 3]
    assert len({n["params"]["progressToken"] for n in progress}) == 1


@pytest.mark.parametrize("server", SERVERS)
async def test_back_to_back_progress_arrives_with_the_call(gateway: RunningGateway, server: str) -> None:
    _, counted, notifications = await run_sse(
        sse_url(gateway),
        [{"op": "init"}, call(f"{server}__progress", {"steps": 3}, progress=True), {"op": "notifications"}],
    )
    assert text(ok(counted)) == f"{server} counted 3"
    # All three were read by the time the call resolved (the tap runs as each message is read);
    # onprogress may miss the ones that shared the response's chunk (typescript-sdk issue #2580).
    progress = of_method(ok(notifications), "notifications/progress")
    assert [n["params"]["message"] for n in progress] == [f"{server} step {i}" for i in (1, 2, 3)]
    expected = [{"progress": i, "total": 3, "message": f"{server} step {i}"} for i in (1, 2, 3)]
    assert counted["progress"] == expected[: len(counted["progress"])]


@pytest.mark.parametrize("server", SERVERS)
async def test_elicitation_is_answered_over_sse(gateway: RunningGateway, server: str) -> None:
    init, asked, received, errors = await run_sse(
        sse_url(gateway),
        [
            {"op": "init", "elicitation": {"action": "accept", "content": {"answer": "blue"}}},
            call(f"{server}__ask", {"question": "favourite colour?"}),
            {"op": "received"},
            {"op": "transportErrors"},
        ],
    )
    assert ok(init)["clientCapabilities"] == {"elicitation": {}}
    assert text(ok(asked)) == f"{server} heard: blue"
    [request] = ok(received)
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "favourite colour?"
    assert ok(errors) == []


@pytest.mark.parametrize("server", SERVERS)
async def test_tools_list_changed_comes_down_the_stream(gateway: RunningGateway, server: str) -> None:
    tool = f"sse_fresh_{server}"
    _, grown, changed, tools = await run_sse(
        sse_url(gateway),
        [
            {"op": "init"},
            call(f"{server}__grow", {"tool": tool}),
            {"op": "listChanged", "kind": "tools", "timeoutMs": CALL_MS},
            {"op": "listTools", "timeoutMs": CALL_MS},
        ],
    )
    assert text(ok(grown)) == f"{server} grew {tool}"
    assert ok(changed)["method"] == "notifications/tools/list_changed"
    names = [t["name"] for t in ok(tools)["tools"]]
    assert f"{server}__{tool}" in names
    assert len(names) == len(set(names))


async def test_single_server_sse_endpoint_keeps_names(gateway: RunningGateway) -> None:
    url = base(gateway) + "/servers/beta/sse"
    init, listed, who = await run_sse(url, [{"op": "init"}, {"op": "listTools", "timeoutMs": CALL_MS}, call("whoami")])
    connected = ok(init)
    assert connected["endpoint"] == f"{base(gateway)}/servers/beta/messages?session_id={connected['sessionId']}"
    names = [t["name"] for t in ok(listed)["tools"]]
    assert {"whoami", "progress", "ask", "grow"} <= set(names)
    assert not any("__" in name for name in names), names
    assert len(names) == len(set(names))
    assert text(ok(who)) == "beta"
