"""A dead, crashing or slow upstream fails only its own calls, quickly, naming itself."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client, MCPError

from toolway.sessions.upstream import State
from toolway.testing import http_upstream, running_gateway, stdio_upstream_command, wait_for_state

FAST = {"reconnect": {"initial": 0.1, "max": 0.5}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_killed_upstream_leaves_the_others_usable(tmp_path: Path) -> None:
    async with http_upstream("alpha") as alpha, http_upstream("beta", era="handshake") as beta:
        servers = [
            {"name": "alpha", "transport": "streamable-http", "url": alpha.url, **FAST},
            {
                "name": "beta",
                "transport": "streamable-http",
                "url": beta.url,
                "timeouts": {"call": 5},
                **FAST,
            },
            {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma"), **FAST},
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            async with Client(gw.url, mode="2026-07-28") as client:
                assert (await client.call_tool("beta__whoami", {})).content[0].text == "beta"  # type: ignore[union-attr]
                await beta.kill()
                started = time.monotonic()
                with pytest.raises(MCPError) as info:
                    await client.call_tool("beta__whoami", {})
                assert time.monotonic() - started < 5  # within its deadline
                assert info.value.error.code == -32000
                assert "'beta'" in info.value.error.message
                assert info.value.error.data["server"] == "beta"  # type: ignore[index]
                # Until it is back, calls fail at once instead of waiting on it.
                with pytest.raises(MCPError, match="beta"):
                    await client.call_tool("beta__echo", {"text": "x"})
                for server in ("alpha", "gamma"):
                    who = await client.call_tool(f"{server}__whoami", {})
                    assert who.content[0].text == server  # type: ignore[union-attr]
                names = {t.name for t in (await client.list_tools()).tools}
                assert "alpha__echo" in names and "gamma__echo" in names
                assert not any(n.startswith("beta__") for n in names)


async def test_crashed_stdio_server_is_restarted(tmp_path: Path) -> None:
    servers = [{"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma"), **FAST}]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
        async with Client(gw.url, mode="legacy") as client:
            with pytest.raises(MCPError) as info:
                await client.call_tool("gamma__crash", {})
            assert info.value.error.code == -32000
            assert "gamma" in info.value.error.message and "exited with code 3" in info.value.error.message
            await wait_for_state(gw.gateway, "gamma", State.READY)
            again = await client.call_tool("gamma__whoami", {})
            assert again.content[0].text == "gamma"  # type: ignore[union-attr]


async def test_unreachable_server_fails_fast_and_others_list(tmp_path: Path) -> None:
    port = closed_port()
    async with http_upstream("alpha") as alpha:
        servers = [
            {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
            {"name": "ghost", "transport": "streamable-http", "url": f"http://127.0.0.1:{port}/mcp"},
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            assert gw.gateway.manager.get("ghost").state is State.DOWN  # type: ignore[union-attr]
            async with Client(gw.url, mode="legacy") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                assert names and all(n.startswith("alpha__") for n in names)
                assert {"alpha__echo", "alpha__whoami"} <= names
                started = time.monotonic()
                with pytest.raises(MCPError) as info:
                    await client.call_tool("ghost__anything", {})
                assert time.monotonic() - started < 1
                message = info.value.error.message
                assert "ghost" in message and str(port) in message


async def test_slow_upstream_times_out_without_stalling_others(tmp_path: Path) -> None:
    servers = [
        {
            "name": "slowpoke",
            "transport": "stdio",
            "command": stdio_upstream_command("slowpoke"),
            "timeouts": {"call": 0.5},
        },
        {"name": "quick", "transport": "stdio", "command": stdio_upstream_command("quick")},
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
        async with Client(gw.url, mode="2026-07-28") as client:
            slow = asyncio.create_task(client.call_tool("slowpoke__slow", {"seconds": 30}))
            quick = await client.call_tool("quick__whoami", {})
            assert quick.content[0].text == "quick"  # type: ignore[union-attr]
            assert not slow.done()
            with pytest.raises(MCPError) as info:
                await slow
            assert info.value.error.code == -32001
            assert "slowpoke" in info.value.error.message and "0.5s" in info.value.error.message
            # The same server still serves its next call: a timeout is not a dead connection.
            who = await client.call_tool("slowpoke__whoami", {})
            assert who.content[0].text == "slowpoke"  # type: ignore[union-attr]


async def test_a_tool_can_have_deadlines_of_its_own(tmp_path: Path) -> None:
    # `strict` gives `slow` half a second inside a patient server; `patient` gives `slow` longer
    # than its own short deadline. Each `slow` call follows its tool's deadline, not the server's.
    servers = [
        {
            "name": "strict",
            "transport": "stdio",
            "command": stdio_upstream_command("strict"),
            "timeouts": {"call": 30},
            "tool_timeouts": {"slow": {"call": 0.5}},
        },
        {
            "name": "patient",
            "transport": "stdio",
            "command": stdio_upstream_command("patient"),
            "timeouts": {"call": 0.5},
            "tool_timeouts": {"slow": {"call": 30}},
        },
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
        async with Client(gw.url, mode="2026-07-28") as client:
            with pytest.raises(MCPError) as info:
                await client.call_tool("strict__slow", {"seconds": 30})
            assert info.value.error.code == -32001 and "0.5s" in info.value.error.message
            done = await client.call_tool("patient__slow", {"seconds": 1})
            assert done.content[0].text == "done"  # type: ignore[union-attr]


async def test_shutdown_drains_in_flight_calls_and_stops_children(tmp_path: Path) -> None:
    servers = [{"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")}]
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "gamma__slow", "arguments": {"seconds": 0.5}, "_meta": ENVELOPE},
    }
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "gamma__slow"}
    async with aiohttp.ClientSession() as http:
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            conn = gw.gateway.manager.get("gamma")
            assert conn is not None
            pid = conn.pid()
            in_flight = asyncio.create_task(_post(http, gw.url, body, headers))
            async with asyncio.timeout(5):
                while conn.inflight == 0:  # noqa: ASYNC110 - bounded poll of a counter
                    await asyncio.sleep(0.01)
        # Leaving the block stopped the listeners after draining, then the child.
        status, answer = await in_flight
    assert status == 200
    assert answer["result"]["content"][0]["text"] == "done"
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_keepalive_pings_notice_a_silent_death(tmp_path: Path) -> None:
    """No client calls at all: the gateway's own MCP pings find the dead handshake-era server."""
    async with http_upstream("beta", era="handshake") as beta:
        servers = [{"name": "beta", "transport": "streamable-http", "url": beta.url, "keepalive_seconds": 0.2, **FAST}]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
            await wait_for_state(gw.gateway, "beta", State.READY)
            await beta.kill()
            await wait_for_state(gw.gateway, "beta", State.DOWN, timeout=10)
            conn = gw.gateway.manager.get("beta")
            assert conn is not None and conn.last_error is not None
