"""Registering and deregistering servers at run time, through the admin API, on SQLite and PostgreSQL.

Real peers: fixture upstreams (official `mcp` SDK) in child processes, the gateway on
port 0, the SDK's client on `/mcp`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest
from mcp import Client, MCPError

from toolway.registry.events import ServerRegistered, ServerRemoved
from toolway.sessions.upstream import State
from toolway.testing import http_upstream, running_gateway, stdio_upstream_command, wait_for_state
from toolway.testing.admin import AdminClient, until

logging.getLogger().setLevel(logging.WARNING)


def names(tools: types.ListToolsResult) -> set[str]:
    return {tool.name for tool in tools.tools}


async def test_a_registered_server_is_callable_and_a_removed_one_drains_first(store_url: str, tmp_path: Path) -> None:
    asked, release = asyncio.Event(), asyncio.Event()

    async def answer_later(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        await release.wait()  # the call stays in flight until the test lets it finish
        return types.ElicitResult(action="accept", content={"answer": "blue"})

    async with (
        http_upstream("dyn", era="handshake") as upstream,
        running_gateway(servers=[], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        seen: list[object] = []
        gw.gateway.events.subscribe(ServerRegistered, seen.append)
        gw.gateway.events.subscribe(ServerRemoved, seen.append)
        status, body = await admin.request(
            "POST",
            "/admin/servers",
            {"name": "dyn", "transport": "streamable-http", "url": upstream.url, "tags": ["t"]},
        )
        assert status == 201, body
        assert body["managed_by"] == "api" and body["config"]["tags"] == ["t"]
        # Connecting starts with the registration itself: no restart, no polling interval.
        await wait_for_state(gw.gateway, "dyn", State.READY)

        async with Client(gw.url, mode="legacy", elicitation_callback=answer_later) as client:
            assert "dyn__echo" in names(await client.list_tools())
            echoed = await client.call_tool("dyn__echo", {"text": "hi"})
            assert echoed.content[0].text == "hi"  # type: ignore[union-attr]

            in_flight = asyncio.create_task(client.call_tool("dyn__ask", {"question": "colour?"}))
            await asyncio.wait_for(asked.wait(), 10)
            removal = asyncio.create_task(admin.request("DELETE", "/admin/servers/dyn"))
            await until(lambda: "dyn" not in gw.gateway.manager.connections, what="dyn leaves the routing table")

            # Draining: new calls are refused and the server is gone from the lists ...
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool("dyn__echo", {"text": "late"})
            assert not any(n.startswith("dyn__") for n in names(await client.list_tools()))
            # ... while the call in flight is waited for.
            assert not removal.done() and not in_flight.done()
            release.set()
            answered = await asyncio.wait_for(in_flight, 10)
            assert answered.content[0].text.endswith("blue")  # type: ignore[union-attr]
            assert await asyncio.wait_for(removal, 20) == (200, {"removed": "dyn", "drained": True})

        assert (await admin.request("GET", "/admin/servers/dyn"))[0] == 404
        assert [type(e).__name__ for e in seen] == ["ServerRegistered", "ServerRemoved"]


async def test_api_servers_are_restored_and_file_servers_win(store_url: str, tmp_path: Path) -> None:
    gamma = {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")}
    async with (
        running_gateway(servers=[], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, body = await admin.request("POST", "/admin/servers", gamma)
        assert status == 201, body
        status, body = await admin.request("POST", "/admin/servers/gamma/disable")
        assert (status, body["enabled"], body["state"]) == (200, False, "disabled")

    # The next start restores it from the store, disabled as it was left.
    async with (
        running_gateway(servers=[], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, body = await admin.request("GET", "/admin/servers/gamma")
        assert (status, body["managed_by"], body["enabled"]) == (200, "api", False)
        status, body = await admin.request("POST", "/admin/servers/gamma/enable")
        assert status == 200
        await wait_for_state(gw.gateway, "gamma", State.READY)
        async with Client(gw.url) as client:
            assert (await client.call_tool("gamma__whoami", {})).content[0].text == "gamma"  # type: ignore[union-attr]

    # A file entry of the same name shadows the stored one, and is file-managed.
    file_gamma = {**gamma, "tags": ["from-file"]}
    async with (
        running_gateway(servers=[file_gamma], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, body = await admin.request("GET", "/admin/servers/gamma")
        assert (body["managed_by"], body["config"]["tags"]) == ("file", ["from-file"])
        status, body = await admin.request("DELETE", "/admin/servers/gamma")
        assert status == 409 and "config file" in body["error"]


async def test_bad_requests_name_the_problem(store_url: str, tmp_path: Path) -> None:
    echo = {"name": "one", "transport": "stdio", "command": stdio_upstream_command("one")}
    async with (
        running_gateway(servers=[], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, body = await admin.request("POST", "/admin/servers", {"name": "Bad Name", "transport": "stdio"})
        assert status == 400 and body["field"] == "name"
        status, body = await admin.request(
            "POST", "/admin/servers", {"name": "web", "transport": "sse", "url": "ftp://x"}
        )
        assert status == 400 and body["field"] == "url" and "http" in body["error"]
        status, body = await admin.request("POST", "/admin/servers", {**echo, "colour": "red"})
        assert status == 400 and body["field"] == "colour"
        assert (await admin.request("POST", "/admin/servers", echo))[0] == 201
        status, body = await admin.request("POST", "/admin/servers", echo)
        assert status == 409 and body["field"] == "name"
        status, body = await admin.request("PUT", "/admin/servers/one", {**echo, "name": "two"})
        assert status == 400 and body["field"] == "name"
        assert (await admin.request("DELETE", "/admin/servers/nobody"))[0] == 404
        status, body = await admin.request("PATCH", "/admin/servers/one", {"tags": ["x"]})
        assert status == 200, body
        assert (body["config"]["tags"], body["config"]["command"]) == (["x"], echo["command"])
        status, _ = await admin.request("PUT", "/admin/servers/one/heartbeat")
        assert status == 405

        # What start-up checks of the file's servers is checked at registration too.
        missing = tmp_path / "no-such-secret"
        secret = {"credentials": {"headers": {"X-Key": {"value_file": str(missing)}}}}
        status, body = await admin.request(
            "POST",
            "/admin/servers",
            {"name": "sec", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp", **secret},
        )
        assert status == 400 and body["field"] == "credentials" and str(missing) in body["error"], body
        assert (await admin.request("GET", "/admin/servers/sec"))[0] == 404  # nothing half-registered


async def test_egress_rules_apply_to_registered_servers(tmp_path: Path) -> None:
    async with (
        running_gateway(servers=[], store_dir=tmp_path, egress={"allow_loopback": False}) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        body = {"name": "local", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"}
        status, answer = await admin.request("POST", "/admin/servers", body)
        assert status == 400 and answer["field"] == "url" and "127.0.0.1" in answer["error"], answer
