"""Every ingress by every upstream transport: list and call through one gateway.

Ingress: Streamable HTTP, legacy HTTP+SSE (2024-11-05), WebSocket, stdio (`toolway stdio`).
Upstream: Streamable HTTP, SSE, WebSocket, stdio. Clients: the official `mcp` SDK's
Streamable HTTP, SSE and stdio clients, and the `websockets` library for WebSocket.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import mcp.types as types
import orjson
import pytest
import pytest_asyncio
import websockets
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from toolway.testing import RunningGateway, http_upstream, running_gateway, stdio_upstream_command

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAMS = ["up_http", "up_sse", "up_ws", "up_stdio"]
INGRESSES = ["streamable-http", "sse", "websocket", "stdio"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(http_upstream("up_http"))
        sse = await stack.enter_async_context(http_upstream("up_sse", transport="sse"))
        ws = await stack.enter_async_context(http_upstream("up_ws", transport="ws"))
        servers = [
            {"name": "up_http", "transport": "streamable-http", "url": http.url},
            {"name": "up_sse", "transport": "sse", "url": sse.url},
            {"name": "up_ws", "transport": "websocket", "url": ws.url},
            {"name": "up_stdio", "transport": "stdio", "command": stdio_upstream_command("up_stdio")},
        ]
        gw = await stack.enter_async_context(
            running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("matrix"))
        )
        yield gw


async def via_session(session: ClientSession, upstream: str) -> tuple[set[str], str]:
    await session.initialize()
    names: set[str] = set()
    cursor = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        names |= {t.name for t in page.tools}
        if not (cursor := page.next_cursor):
            break
    who = await session.call_tool(f"{upstream}__whoami", {})
    return names, who.content[0].text  # type: ignore[union-attr]


async def via_websocket(url: str, upstream: str) -> tuple[set[str], str]:
    async with websockets.connect(url, subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
        init: dict[str, Any] = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "m", "version": "0"},
        }
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
        await ws.recv()
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        names = {t["name"] for t in json.loads(await ws.recv())["result"]["tools"]}
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": f"{upstream}__whoami"}}
        await ws.send(json.dumps(call))
        return names, json.loads(await ws.recv())["result"]["content"][0]["text"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("ingress", INGRESSES)
async def test_every_ingress_reaches_every_upstream(
    matrix: RunningGateway, ingress: str, upstream: str, tmp_path: Path
) -> None:
    base = matrix.url.removesuffix("/mcp")
    if ingress == "streamable-http":
        async with streamable_http_client(matrix.url) as (read, write), ClientSession(read, write) as session:
            names, who = await via_session(session, upstream)
    elif ingress == "sse":
        async with sse_client(base + "/sse") as (read, write), ClientSession(read, write) as session:
            names, who = await via_session(session, upstream)
    elif ingress == "websocket":
        names, who = await via_websocket(base.replace("http://", "ws://") + "/ws", upstream)
    else:
        config = tmp_path / "stdio.yaml"
        data = matrix.config.model_dump(mode="json")
        data.update(store=f"sqlite:///{tmp_path / 'stdio.db'}", admin={"enabled": False})
        data["servers"] = [s for s in data["servers"] if s["name"] == upstream]
        config.write_bytes(orjson.dumps(data))
        toolway = str(Path(sys.executable).parent / "toolway")
        params = StdioServerParameters(command=toolway, args=["stdio", "--config", str(config)])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            names, who = await via_session(session, upstream)
    assert f"{upstream}__echo" in names
    assert who == upstream
