"""Writes what the gateway learns about each server into the store.

Listens to the connection manager's change events and writes in the background,
so no request ever waits on the database.
"""

from __future__ import annotations

import asyncio

import structlog

from toolway.registry.store import ServerRecord, Store, StoreError, ToolRecord
from toolway.sessions.pool import ServerPool
from toolway.sessions.upstream import State

log = structlog.get_logger("toolway.registry")


class RegistryRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: asyncio.Queue[ServerRecord] = asyncio.Queue()

    def on_change(self, conn: ServerPool) -> None:
        """Manager listener: snapshot now, write later."""
        self._queue.put_nowait(snapshot(conn))

    async def run(self) -> None:
        """Write records until cancelled; a failed write is logged, never fatal."""
        while True:
            record = await self._queue.get()
            try:
                await self._write(record)
            finally:
                self._queue.task_done()

    async def settled(self) -> None:
        """Wait until everything recorded so far is in the store."""
        await self._queue.join()

    async def flush(self) -> None:
        """Write whatever is queued (used at shutdown)."""
        while not self._queue.empty():
            await self._write(self._queue.get_nowait())
            self._queue.task_done()

    async def _write(self, record: ServerRecord) -> None:
        try:
            if record.status == State.READY.value:
                await self._store.record_server(record)
            else:
                existing = {s.name for s in await self._store.list_servers()}
                if record.name in existing:
                    await self._store.record_status(record.name, record.status, record.last_error)
                else:
                    await self._store.record_server(record)
        except StoreError as exc:
            log.error("could not record server state", server=record.name, error=str(exc))


def snapshot(conn: ServerPool) -> ServerRecord:
    negotiated = conn.negotiated if conn.state is State.READY else None
    tools = tuple(
        ToolRecord(
            server=conn.name,
            name=t["name"],
            title=t.get("title") if isinstance(t.get("title"), str) else None,
            description=t.get("description") if isinstance(t.get("description"), str) else None,
            input_schema=t.get("inputSchema") if isinstance(t.get("inputSchema"), dict) else None,
        )
        for t in conn.catalog.get("tools/list")
        if isinstance(t.get("name"), str)
    )
    return ServerRecord(
        name=conn.name,
        transport=conn.effective_transport or conn.config.transport,
        endpoint=conn.endpoint(),
        status=conn.state.value,
        era=_era(negotiated.era, negotiated.protocol_version) if negotiated else None,
        protocol_version=negotiated.protocol_version if negotiated else None,
        server_info=negotiated.server_info if negotiated else None,
        capabilities=negotiated.capabilities if negotiated else None,
        last_error=conn.last_error,
        tools=tools if negotiated else (),
    )


def _era(era: str, version: str) -> str:
    """The label the config's `era:` uses: "handshake", or the stateless-era version."""
    return "handshake" if era == "handshake" else version
