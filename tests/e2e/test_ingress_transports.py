"""Every ingress reaches every upstream: legacy HTTP+SSE (2024-11-05), WebSocket and stdio,
alongside Streamable HTTP, against the module's three upstreams (stateless-era HTTP,
handshake-era HTTP, stdio)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import mcp.types as types
import orjson
import pytest
import websockets
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client

from toolway.testing import RunningGateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVERS = ["alpha", "beta", "gamma"]


async def answer(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"answer": "over the wire"})


async def exercise(session: ClientSession) -> None:
    await session.initialize()
    names: set[str] = set()
    cursor = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        names |= {t.name for t in page.tools}
        if not (cursor := page.next_cursor):
            break
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    for server in SERVERS:
        assert f"{server}__whoami" in names
        who = await session.call_tool(f"{server}__whoami", {})
        assert who.content[0].text == server  # type: ignore[union-attr]
        counted = await session.call_tool(f"{server}__progress", {"steps": 2}, progress_callback=on_progress)
        assert counted.content[0].text == f"{server} counted 2"  # type: ignore[union-attr]
        heard = await session.call_tool(f"{server}__ask", {"question": "?"})
        assert heard.content[0].text == f"{server} heard: over the wire"  # type: ignore[union-attr]
    assert progress == [1.0, 2.0] * len(SERVERS)


async def test_legacy_sse_client(gateway: RunningGateway) -> None:
    sse_url = gateway.url.removesuffix("/mcp") + "/sse"
    async with sse_client(sse_url) as (read, write), ClientSession(read, write, elicitation_callback=answer) as s:
        await exercise(s)


async def test_legacy_sse_single_server(gateway: RunningGateway) -> None:
    sse_url = gateway.server_url("beta").removesuffix("/mcp") + "/sse"
    async with sse_client(sse_url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert "whoami" in {t.name for t in (await session.list_tools()).tools}


async def test_legacy_sse_unknown_session_is_404(gateway: RunningGateway) -> None:
    import aiohttp

    url = gateway.url.removesuffix("/mcp") + "/messages?session_id=nope"
    async with aiohttp.ClientSession() as http, http.post(url, json={"jsonrpc": "2.0", "method": "x"}) as resp:
        assert resp.status == 404


def ws_url(gateway: RunningGateway, path: str = "/ws") -> str:
    return gateway.url.replace("http://", "ws://").removesuffix("/mcp") + path


async def test_websocket_client_lists_and_calls(gateway: RunningGateway) -> None:
    async with websockets.connect(ws_url(gateway), subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "mcp"
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "ws", "version": "0"},
            },
        }
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["result"]["protocolVersion"] == "2025-11-25"
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        assert json.loads(await ws.recv())["result"]["tools"]
        for index, server in enumerate(SERVERS):
            call = {"jsonrpc": "2.0", "id": 10 + index, "method": "tools/call", "params": {"name": f"{server}__whoami"}}
            await ws.send(json.dumps(call))
            reply = json.loads(await ws.recv())
            assert reply["id"] == 10 + index and reply["result"]["content"][0]["text"] == server


async def test_websocket_stateless_era_and_errors(gateway: RunningGateway) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    async with websockets.connect(ws_url(gateway), subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "gamma__echo", "arguments": {"text": "hi"}, "_meta": meta},
        }
        await ws.send(json.dumps(call))
        reply = json.loads(await ws.recv())
        assert reply["result"]["content"][0]["text"] == "hi" and reply["result"]["resultType"] == "complete"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["error"]["code"] == -32700
        await ws.send(b"\x00binary")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1003


async def test_websocket_refuses_other_subprotocols(gateway: RunningGateway) -> None:
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url(gateway), subprotocols=["graphql-ws"]):  # type: ignore[list-item]
            pass


async def test_stdio_ingress(gateway: RunningGateway, tmp_path: Path) -> None:
    config = tmp_path / "stdio.yaml"
    data = gateway.config.model_dump(mode="json")
    data["store"] = f"sqlite:///{tmp_path / 'stdio.db'}"
    data["admin"] = {"enabled": False}
    config.write_bytes(orjson.dumps(data))
    toolway = str(Path(sys.executable).parent / "toolway")
    params = StdioServerParameters(command=toolway, args=["stdio", "--config", str(config)])
    async with asyncio.timeout(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write, elicitation_callback=answer) as s:
            await exercise(s)
