"""Fixture tools for routing tests: which replica answered, and did a call run twice?

- `replica(delay=0)`: returns this upstream's name after `delay` seconds; annotated
  `readOnlyHint` and `idempotentHint`, so the gateway may retry it.
- `record(key, delay=0)`: appends `key` to this upstream's journal, then waits `delay`
  seconds and returns the name. Not idempotent: a gateway must never run it twice.
- `journal()`: the keys recorded so far, one a line.
- `pid()`: this process's id (tells apart stdio replicas, which share a name).

With `--journal PATH` the journal is also appended to that file (one `write` per key,
with O_APPEND), so it survives the process being killed.
"""

from __future__ import annotations

import os

import anyio
from mcp.server import MCPServer
from mcp_types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
NOT_IDEMPOTENT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)


def add_routing_tools(server: MCPServer, name: str, journal_path: str | None = None) -> None:
    """Register `replica`, `record`, `journal` and `pid` on `server`."""
    keys: list[str] = []
    fd = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if journal_path else None

    @server.tool(description="Return this upstream's name after `delay` seconds (read-only).", annotations=READ_ONLY)
    async def replica(delay: float = 0.0) -> str:
        if delay:
            await anyio.sleep(delay)
        return name

    @server.tool(
        description="Append `key` to the journal, wait `delay` seconds, return the name.", annotations=NOT_IDEMPOTENT
    )
    async def record(key: str, delay: float = 0.0) -> str:
        keys.append(key)
        if fd is not None:
            os.write(fd, f"{key}\n".encode())
        if delay:
            await anyio.sleep(delay)
        return name

    @server.tool(description="The keys `record` has journaled, one a line.", annotations=READ_ONLY)
    def journal() -> str:
        return "\n".join(keys)

    @server.tool(description="This upstream process's id.", annotations=READ_ONLY)
    def pid() -> str:
        return str(os.getpid())
