"""The audit log's hash chain, its queue and writer, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from toolway.config.model import Audit as AuditConfig
from toolway.observability.audit import AuditLog, args_digest
from toolway.observability.events import CallFinished, Events
from toolway.pipeline.context import Call
from toolway.registry.audit_store import GENESIS, AuditEntry, AuditStore, chain_hash, parse_since
from toolway.registry.store import StoreError

NOW = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=f"2026-11-29T12:00:{n:02d}.000000Z",
        principal=None,
        method="tools/call",
        server="alpha",
        target="alpha__echo",
        era="modern",
        transport="streamable-http",
        outcome="ok",
        error_code=None,
        request_id=f"r{n}",
        args_digest=args_digest({"n": n}),
        duration_us=1000 + n,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AuditStore]:
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'toolway.db'}") as audit_store:
        yield audit_store


def _sql(tmp_path: Path, statement: str, *args: Any) -> None:
    with sqlite3.connect(tmp_path / "toolway.db") as db:
        db.execute(statement, args)


async def test_rows_chain_to_each_other(store: AuditStore) -> None:
    await store.append([_entry(1), _entry(2)])
    await store.append([_entry(3)])
    rows = await store.query()
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[2].hash == chain_hash(rows[1].hash, _entry(3))
    assert await store.verify() == (3, None)


async def test_an_edited_row_is_named(store: AuditStore, tmp_path: Path) -> None:
    await store.append([_entry(n) for n in range(1, 6)])
    _sql(tmp_path, "UPDATE audit_log SET outcome = 'error' WHERE id = 3")
    checked, broken = await store.verify()
    assert checked == 2 and broken is not None and broken.row_id == 3 and "edited" in broken.reason


async def test_a_deleted_row_is_named(store: AuditStore, tmp_path: Path) -> None:
    await store.append([_entry(n) for n in range(1, 6)])
    _sql(tmp_path, "DELETE FROM audit_log WHERE id = 2")
    _, broken = await store.verify()
    assert broken is not None and broken.row_id == 2 and "deleted" in broken.reason


async def test_a_rewritten_row_is_named_by_the_next_link(store: AuditStore, tmp_path: Path) -> None:
    await store.append([_entry(n) for n in range(1, 4)])
    rows = await store.query()
    forged = _entry(99)
    _sql(
        tmp_path,
        "UPDATE audit_log SET request_id = ?, args_digest = ?, duration_us = ?, at = ?, hash = ? WHERE id = 2",
        forged.request_id,
        forged.args_digest,
        forged.duration_us,
        forged.at,
        chain_hash(rows[0].hash, forged),
    )
    _, broken = await store.verify()
    assert broken is not None and broken.row_id == 2 and "rewritten" in broken.reason


async def test_query_filters_and_limit(store: AuditStore) -> None:
    await store.append([_entry(n) for n in range(1, 6)])
    await store.append([replace(_entry(6), target="beta__add", principal="ana")])
    assert [r.id for r in await store.query(target="beta__add")] == [6]
    assert [r.id for r in await store.query(principal="ana")] == [6]
    assert [r.id for r in await store.query(since="2026-11-29T12:00:04.000000Z")] == [4, 5, 6]
    assert [r.id for r in await store.query(limit=2)] == [5, 6]  # the most recent, oldest first


def test_since_accepts_dates_zones_and_z() -> None:
    assert parse_since("2026-11-29") == "2026-11-29T00:00:00.000000Z"
    assert parse_since("2026-11-29T13:00:00+01:00") == "2026-11-29T12:00:00.000000Z"
    assert parse_since("2026-11-29T12:00:00Z") == "2026-11-29T12:00:00.000000Z"
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_argument_digest_is_canonical() -> None:
    assert args_digest({"a": 1, "b": [1, 2]}) == args_digest({"b": [1, 2], "a": 1})
    assert args_digest({"a": 1}) != args_digest({"a": 2})
    assert args_digest(None) is None


def _finished(method: str, n: int, arguments: Any = None) -> CallFinished:
    call = Call(
        method=method,
        params={"name": "alpha__echo", "arguments": arguments} if arguments is not None else {"uri": "file:///x"},
        era="handshake",
        protocol_version="2025-11-25",
        client_capabilities={},
        client_info=None,
        request_id=f"req-{n}",
        transport="websocket",
        server="alpha",
        target="alpha__echo",
    )
    return CallFinished(call, "ok", None, 0.0015, 0.001)


async def test_the_log_audits_calls_prompts_and_reads_only(tmp_path: Path) -> None:
    events = Events()
    audit = AuditLog(AuditConfig(flush_seconds=60), now=lambda: NOW)
    audit.install(events)
    await audit.start(f"sqlite:///{tmp_path / 'toolway.db'}")
    events.emit(_finished("tools/call", 1, {"text": "secret"}))
    events.emit(_finished("tools/list", 2))
    events.emit(_finished("prompts/get", 3, {"name": "x"}))
    events.emit(_finished("resources/read", 4))
    await audit.close()  # writes what is queued
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'toolway.db'}") as store:
        rows = await store.query()
        assert await store.verify() == (3, None)
    assert [r.entry.method for r in rows] == ["tools/call", "prompts/get", "resources/read"]
    first = rows[0].entry
    assert first.at == "2026-11-29T12:00:00.123456Z" and first.request_id == "req-1"
    assert (first.transport, first.era, first.duration_us) == ("websocket", "handshake", 1500)
    assert first.args_digest == args_digest({"text": "secret"})
    assert rows[2].entry.args_digest is None
    assert "secret" not in repr(rows)


async def test_a_full_queue_leaves_a_visible_gap(tmp_path: Path) -> None:
    events = Events()
    audit = AuditLog(AuditConfig(max_queued=2, flush_seconds=60), now=lambda: NOW)
    audit.install(events)
    await audit.start(f"sqlite:///{tmp_path / 'toolway.db'}")
    for n in range(5):
        events.emit(_finished("tools/call", n, {}))
    await audit.close()
    async with await AuditStore.open(f"sqlite:///{tmp_path / 'toolway.db'}") as store:
        rows = await store.query()
    assert [r.entry.method for r in rows] == ["audit/dropped", "tools/call", "tools/call"]
    assert rows[0].entry.request_id.startswith("3 records dropped")


class FlakyStore(AuditStore):
    def __init__(self, inner: AuditStore) -> None:
        super().__init__(inner._engine, "flaky")
        self.failures = 1

    async def append(self, entries: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full")
        await super().append(entries)


async def test_a_failed_write_is_retried_not_lost(tmp_path: Path) -> None:
    events = Events()
    audit = AuditLog(AuditConfig(flush_seconds=60), now=lambda: NOW)
    audit.install(events)
    url = f"sqlite:///{tmp_path / 'toolway.db'}"
    audit._store = FlakyStore(await AuditStore.open(url))
    events.emit(_finished("tools/call", 1, {}))
    await audit.flush()  # fails, keeps the record
    events.emit(_finished("tools/call", 2, {}))
    await audit.close()
    async with await AuditStore.open(url) as store:
        assert [r.entry.request_id for r in await store.query()] == ["req-1", "req-2"]


async def test_two_writers_on_one_store_extend_one_chain(tmp_path: Path) -> None:
    """Several gateway processes may share a store: each append locks before it reads the head."""
    url = f"sqlite:///{tmp_path / 'toolway.db'}"
    async with await AuditStore.open(url) as first, await AuditStore.open(url) as second:
        await asyncio.gather(*(store.append([_entry(n)]) for n in range(20) for store in (first, second)))
        assert await first.verify() == (40, None)
