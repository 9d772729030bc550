"""What an agent cannot call, it does not see: killed servers and tools leave the lists.

One gateway on the default memory state backend, a stdio fixture upstream, the operator's
`toolway kill|revive` CLI against the admin API, and a handshake-era client that is told
(`notifications/tools/list_changed` on its GET stream) when a kill changes its lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from typer.testing import CliRunner

from toolway.cli.main import app as cli
from toolway.protocol.errors import KILLED
from toolway.testing import running_gateway, stdio_upstream_command
from toolway.testing.wire import call_tool, events, initialize, modern_request, session_headers


async def listed(http: aiohttp.ClientSession, url: str, method: str) -> set[str]:
    body, headers = modern_request(method, {})
    async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
        result = (await resp.json())["result"]
    return {item["name"] for item in result["tools" if method == "tools/list" else "prompts"]}


async def discovered(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(f"{base}/v0.1/servers") as resp:
        return [entry["server"]["name"].split("/")[-1] for entry in (await resp.json())["servers"]]


async def notifications(stream: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for event in events(stream):
        if event.data:
            yield orjson.loads(event.data)


async def next_list_changed(messages: AsyncIterator[dict[str, Any]]) -> None:
    async with asyncio.timeout(10):
        async for message in messages:
            if message.get("method") == "notifications/tools/list_changed":
                return
    raise AssertionError("the stream ended before notifications/tools/list_changed")


async def operator(*args: str) -> str:
    # In a thread: the CLI blocks on HTTP to the gateway, which runs on this event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def test_killed_tools_and_servers_leave_the_lists_and_come_back(tmp_path: Path) -> None:
    servers = [
        {"name": "calc", "transport": "stdio", "command": stdio_upstream_command("calc")},
        {"name": "notes", "transport": "stdio", "command": stdio_upstream_command("notes")},
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
        admin = ["--admin-url", gw.admin_url or ""]
        session = await initialize(http, gw.url)
        get = {**session_headers(session), "Accept": "text/event-stream"}
        async with http.get(gw.url, headers=get) as stream:
            messages = notifications(stream)
            assert {"calc__add", "notes__add"} <= await listed(http, gw.url, "tools/list")

            assert "is off" in await operator("kill", "tool", "calc__add", *admin)
            await next_list_changed(messages)
            tools = await listed(http, gw.url, "tools/list")
            assert "calc__add" not in tools and {"calc__echo", "notes__add"} <= tools
            assert (await call_tool(http, gw.url, "calc__add", {"a": 1, "b": 1}))["error"]["code"] == KILLED
            # The server's own endpoint hides it as well.
            assert "add" not in await listed(http, gw.server_url("calc"), "tools/list")

            await operator("kill", "server", "notes", *admin)
            await next_list_changed(messages)
            assert not any(n.startswith("notes__") for n in await listed(http, gw.url, "tools/list"))
            prompts = await listed(http, gw.url, "prompts/list")
            assert "notes__greet" not in prompts and "calc__greet" in prompts
            # Agents' discovery leaves it out too; operators (the admin port) still see it.
            assert await discovered(http, gw.url.removesuffix("/mcp")) == ["calc"]
            assert await discovered(http, gw.admin_url or "") == ["calc", "notes"]

            await operator("revive", "server", "notes", *admin)
            await next_list_changed(messages)
            await operator("revive", "tool", "calc__add", *admin)
            await next_list_changed(messages)
            assert {"calc__add", "notes__add"} <= await listed(http, gw.url, "tools/list")
            assert "notes__greet" in await listed(http, gw.url, "prompts/list")
            assert await discovered(http, gw.url.removesuffix("/mcp")) == ["calc", "notes"]
