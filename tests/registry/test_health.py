"""Health: a killed upstream's tools leave the lists after the grace period and come back with it.

A real fixture upstream is killed (SIGKILL) and restarted on the same port; the health
history is read through the admin API and the CLI. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

from mcp import Client
from typer.testing import CliRunner

from toolway.cli.main import app
from toolway.registry.events import HealthChanged
from toolway.testing import http_upstream, running_gateway, start_http_upstream, stdio_upstream_command
from toolway.testing.admin import AdminClient

logging.getLogger().setLevel(logging.WARNING)

GRACE = 0.5
HEALTH = {
    "interval_seconds": 0.1,
    "timeout_seconds": 5,
    "unhealthy_after": 2,
    "healthy_after": 1,
    "grace_seconds": GRACE,
}


async def test_a_killed_upstream_is_hidden_after_the_grace_period_and_returns(store_url: str, tmp_path: Path) -> None:
    async with http_upstream("alpha") as alpha:
        server = {
            "name": "alpha",
            "transport": "streamable-http",
            "url": alpha.url,
            "health": HEALTH,
            "reconnect": {"initial": 0.05, "max": 0.2},
        }
        async with (
            running_gateway(servers=[server], store_dir=tmp_path, store=store_url) as gw,
            AdminClient(gw.admin_url) as admin,
        ):
            changes: asyncio.Queue[HealthChanged] = asyncio.Queue()
            listed_while_unhealthy: list[bool] = []

            def on_health(event: HealthChanged) -> None:
                if event.state == "unhealthy":  # still in its grace period: listed
                    tools = gw.gateway.router.view().lists["tools/list"]
                    listed_while_unhealthy.append(any(t["name"] == "alpha__echo" for t in tools))
                changes.put_nowait(event)

            gw.gateway.events.subscribe(HealthChanged, on_health)
            async with Client(gw.url) as client:
                assert "alpha__echo" in {t.name for t in (await client.list_tools()).tools}

                await alpha.kill()
                assert (await asyncio.wait_for(changes.get(), 10)).state == "unhealthy"
                assert (await asyncio.wait_for(changes.get(), 10)).state == "hidden"
                assert listed_while_unhealthy == [True]
                assert not any(t.name.startswith("alpha__") for t in (await client.list_tools()).tools)

                back = await start_http_upstream("alpha", port=alpha.port)
                try:
                    assert (await asyncio.wait_for(changes.get(), 20)).state == "healthy"
                    assert "alpha__echo" in {t.name for t in (await client.list_tools()).tools}
                    echoed = await client.call_tool("alpha__echo", {"text": "again"})
                    assert echoed.content[0].text == "again"  # type: ignore[union-attr]
                    await check_history(admin, gw.admin_url or "")
                finally:
                    await back.stop()


async def check_history(admin: AdminClient, admin_url: str) -> None:
    status, body = await admin.request("GET", "/admin/servers/alpha/health")
    assert status == 200
    moves = [(e["from"], e["to"]) for e in body["history"]]
    assert moves == [
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "hidden"),
        ("hidden", "healthy"),
    ]
    unhealthy, hidden = (datetime.fromisoformat(e["at"]) for e in body["history"][1:3])
    assert (hidden - unhealthy).total_seconds() >= GRACE * 0.9  # hidden only once the grace ran out

    # The same history from the command line (a thread: the gateway runs on this loop).
    result = await asyncio.to_thread(CliRunner().invoke, app, ["servers", "health", "alpha", "--admin-url", admin_url])
    assert result.exit_code == 0, result.output
    assert "unhealthy -> hidden" in result.output and "hidden -> healthy" in result.output


async def test_heartbeats_count_as_probes(store_url: str, tmp_path: Path) -> None:
    # A remote server may push heartbeats; each counts as a passed probe.
    server = {
        "name": "gamma",
        "transport": "stdio",
        "command": stdio_upstream_command("gamma"),
    }
    async with (
        running_gateway(servers=[server], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, body = await admin.request("POST", "/admin/servers/gamma/heartbeat")
        assert status == 200 and body["health"]["state"] == "healthy"
        assert body["health"]["consecutive_successes"] >= 2  # the connect, then the heartbeat
        assert (await admin.request("POST", "/admin/servers/ghost/heartbeat"))[0] == 404
