"""The memory state backend: two gateways in one process share it as two processes share Redis.

Same store (a SQLite file), one `MemoryBackend`, real fixture upstreams: a kill through A's
admin API refuses on B, a server registered through A is callable through B, and removed
there with it. What differs from Redis is only where the backend lives.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from toolway.protocol.errors import KILLED
from toolway.sessions.upstream import State
from toolway.state.events import ChangeApplied, ServerChanged, TrafficSet
from toolway.state.memory import MemoryBackend
from toolway.testing import http_upstream, running_gateway, wait_for_state
from toolway.testing.admin import AdminClient, until
from toolway.testing.wire import call_tool, text_of


async def test_two_gateways_in_one_process_share_kills_and_registrations(tmp_path: Path) -> None:
    backend = MemoryBackend()
    async with (
        http_upstream("dyn") as upstream,
        running_gateway(servers=[], store_dir=tmp_path, state_backend=backend) as a,
        running_gateway(servers=[], store_dir=tmp_path, state_backend=backend) as b,
        AdminClient(a.admin_url) as admin,
        aiohttp.ClientSession() as http,
    ):
        applied: asyncio.Queue[ChangeApplied] = asyncio.Queue()
        b.gateway.events.subscribe(ChangeApplied, applied.put_nowait)

        status, body = await admin.request(
            "POST", "/admin/servers", {"name": "dyn", "transport": "streamable-http", "url": upstream.url}
        )
        assert status == 201, body
        assert (await asyncio.wait_for(applied.get(), 10)).event == ServerChanged("dyn")
        await until(lambda: "dyn" in b.gateway.manager.connections, what="B builds the pool of dyn")
        await wait_for_state(b.gateway, "dyn", State.READY)
        assert text_of(await call_tool(http, b.url, "dyn__whoami", {})) == "dyn"

        status, _ = await admin.request("POST", "/admin/kill", {"tool": "dyn__whoami"})
        assert status == 200
        assert (await asyncio.wait_for(applied.get(), 10)).event == TrafficSet("kill/tool/dyn__whoami", "1")
        assert (await call_tool(http, b.url, "dyn__whoami", {}))["error"]["code"] == KILLED

        status, _ = await admin.request("DELETE", "/admin/servers/dyn")
        assert status == 200
        assert (await asyncio.wait_for(applied.get(), 10)).event == ServerChanged("dyn")
        await until(lambda: "dyn" not in b.gateway.registry.entries, what="B forgets dyn")
        assert "Unknown tool" in (await call_tool(http, b.url, "dyn__whoami", {}))["error"]["message"]
