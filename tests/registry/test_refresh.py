"""Catalog refresh on a timer and the change events any component can subscribe to."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mcp import Client

from toolway.registry.events import CatalogChanged, ToolQuarantined
from toolway.testing import running_gateway, stdio_upstream_command

logging.getLogger().setLevel(logging.WARNING)


async def test_a_silent_change_is_found_by_the_refresh_timer(store_url: str, tmp_path: Path) -> None:
    server = {"name": "quiet", "transport": "stdio", "command": stdio_upstream_command("quiet"), "refresh_seconds": 0.1}
    async with running_gateway(servers=[server], store_dir=tmp_path, store=store_url) as gw, Client(gw.url) as client:
        changes: asyncio.Queue[CatalogChanged] = asyncio.Queue()
        quarantined: asyncio.Queue[ToolQuarantined] = asyncio.Queue()
        gw.gateway.events.subscribe(CatalogChanged, changes.put_nowait)
        gw.gateway.events.subscribe(ToolQuarantined, quarantined.put_nowait)

        await client.call_tool("quiet__redescribe", {"tool": "whoami", "description": "Who?", "announce": False})
        event = await asyncio.wait_for(changes.get(), 10)
        assert (event.server, event.added, event.removed, event.changed) == ("quiet", (), (), ("tools/list:whoami",))
        assert (await asyncio.wait_for(quarantined.get(), 10)).tool == "whoami"

        await client.call_tool("quiet__grow", {"tool": "sprout"})  # announced: refreshed at once
        event = await asyncio.wait_for(changes.get(), 10)
        assert event.added == ("tools/list:sprout",)
