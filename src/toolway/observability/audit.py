"""The audit log: every tool call, prompt get and resource read, from `CallFinished` events.

The listener only appends a small record to an in-memory queue; the writer task owned
by the gateway turns records into rows (timestamp, argument digest, hash chain) and
appends them in batches, when `audit.batch_size` have piled up or `audit.flush_seconds`
have passed. A failed write is logged and retried with the next batch; at graceful
shutdown the gateway closes the log after the last call has finished, and everything
still queued is written before the store closes.

Arguments are never stored: only the SHA-256 of their canonical JSON (sorted keys, no
whitespace), so a record proves what was sent without keeping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog

from toolway.config.model import NAMESPACE_SEPARATOR
from toolway.config.model import Audit as AuditConfig
from toolway.ingress.asgi import respond_json
from toolway.observability.events import CallFinished, Events
from toolway.registry.audit_store import AuditEntry, AuditStore, iso, parse_since
from toolway.registry.events import ToolApproved, ToolQuarantined
from toolway.registry.store import StoreError

log = structlog.get_logger("toolway.audit")

AUDITED = frozenset({"tools/call", "prompts/get", "resources/read"})
ADMIN_LIMIT, ADMIN_MAX_LIMIT = 100, 1000


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the listener keeps: the facts as they were, and no formatting or hashing on the hot path."""

    entry: AuditEntry  # `at` and `args_digest` are filled in by the writer
    at: datetime
    arguments: Any


def args_digest(arguments: Any) -> str | None:
    """SHA-256 of the canonical JSON of a call's arguments; None when it had none."""
    if arguments is None:
        return None
    try:
        canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # Came from JSON, so this cannot happen; a digest of nothing would lie.
        canonical = repr(arguments).encode()
    return hashlib.sha256(canonical).hexdigest()


def pending(event: CallFinished, at: datetime) -> _Pending:
    call = event.call
    entry = AuditEntry(
        at="",
        principal=call.principal,
        method=call.method,
        server=call.server,
        target=call.target,
        era=call.era,
        transport=call.transport,
        outcome=event.outcome,
        error_code=event.error_code,
        request_id=call.request_id,
        args_digest=None,
        duration_us=round(event.duration * 1_000_000),
        client=call.client,
    )
    # Resources have no arguments; tools and prompts have `params.arguments`.
    arguments = (call.params or {}).get("arguments") if call.method != "resources/read" else None
    return _Pending(entry, at, arguments)


def entry_of(item: _Pending) -> AuditEntry:
    return replace(item.entry, at=iso(item.at), args_digest=args_digest(item.arguments))


def _entries(items: list[_Pending]) -> list[AuditEntry]:
    return [entry_of(item) for item in items]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Queue of audit records and the writer that empties it into the store."""

    def __init__(self, config: AuditConfig, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.enabled = config.enabled
        self._batch = config.batch_size
        self._interval = config.flush_seconds
        self._max_queued = config.max_queued
        self._now = now
        self._pending: deque[_Pending] = deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer at a time: the task, a flush, the admin API
        self._closing = False
        self._store: AuditStore | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self, events: Events) -> None:
        if self.enabled:
            events.subscribe(CallFinished, self._on_call)
            events.subscribe(ToolQuarantined, self._on_pin_event)
            events.subscribe(ToolApproved, self._on_pin_event)

    def _on_pin_event(self, event: ToolQuarantined | ToolApproved) -> None:
        """A pinned tool drifted, or an operator approved it: a row in the chain, like a call."""
        if len(self._pending) >= self._max_queued:
            self._dropped += 1
            return
        self._pending.append(_Pending(pin_entry(event), self._now(), None))
        self._wake.set()

    def _on_call(self, event: CallFinished) -> None:
        if event.call.method not in AUDITED:
            return
        if len(self._pending) >= self._max_queued:
            self._dropped += 1
            return
        self._pending.append(pending(event, self._now()))
        if len(self._pending) >= self._batch:
            self._wake.set()

    async def start(self, store_url: str) -> None:
        """Open the audit table and start the writer. Raises `StoreError`."""
        if not self.enabled:
            return
        self._store = await AuditStore.open(store_url)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Stop the writer, write everything still queued, close the table."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # The writer ends by itself after its current batch: never cancelled halfway
            # through a commit, which could write a batch twice.
            await self._task
            self._task = None
        store, self._store = self._store, None
        if store is not None:
            try:
                await self._write_pending(store)
            finally:
                await store.close()
            if self._pending or self._dropped:
                log.error("audit records lost at shutdown", count=len(self._pending), dropped=self._dropped)

    async def flush(self) -> None:
        """Write everything queued so far (the writer does this on its own; tests and the admin API ask)."""
        if self._store is not None:
            await self._write_pending(self._store)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._store is not None:
                try:
                    await self._write_pending(self._store)
                except Exception:  # A bug must not end auditing for the rest of the process.
                    log.exception("the audit writer failed; records stay queued")

    async def _write_pending(self, store: AuditStore) -> None:
        """Write the records queued when this started (later ones wait: a flush under load still ends)."""
        async with self._lock:
            left, gap = len(self._pending), True  # at most one "dropped" row per flush
            while left or (gap and self._dropped):
                dropped = self._dropped if gap else 0
                taken = list(itertools.islice(self._pending, min(left, self._batch)))
                # Digests (canonical JSON + SHA-256) are CPU work: off the event loop.
                entries = await asyncio.to_thread(_entries, taken)
                if dropped:
                    entries.insert(0, _dropped_entry(dropped, self._now()))
                try:
                    await store.append(entries)
                except StoreError as exc:
                    log.error("could not write audit records; will retry", count=len(entries), error=str(exc))
                    return
                # Only now: records that arrived meanwhile were appended behind these.
                for _ in taken:
                    self._pending.popleft()
                left -= len(taken)
                self._dropped -= dropped
                gap = gap and not dropped

    async def serve_admin(self, scope: dict[str, Any], send: Any) -> None:
        """`GET /admin/audit?tool=&principal=&since=&limit=`: matching records, oldest first, as JSON."""
        query = {key: values[-1] for key, values in parse_qs(scope.get("query_string", b"").decode()).items()}
        try:
            since = parse_since(query["since"]) if query.get("since") else None
            limit = int(query.get("limit") or ADMIN_LIMIT)
            if not 0 < limit <= ADMIN_MAX_LIMIT:
                raise ValueError(f"limit must be 1..{ADMIN_MAX_LIMIT}")
        except ValueError as exc:
            await respond_json(send, 400, {"error": f"bad query: {exc}"})
            return
        if self._store is None:
            await respond_json(send, 503, {"error": "the audit log is off or not open"})
            return
        try:
            await self.flush()  # answered calls are visible at once, not after the next batch
            rows = await self._store.query(
                principal=query.get("principal") or None, target=query.get("tool") or None, since=since, limit=limit
            )
        except StoreError as exc:
            await respond_json(send, 503, {"error": str(exc)})
            return
        await respond_json(send, 200, {"records": [row.to_json() for row in rows]})


def pin_entry(event: ToolQuarantined | ToolApproved) -> AuditEntry:
    """`registry/tool_quarantined` (outcome "quarantined", or "warned" under `pinning: warn`) or
    `registry/tool_approved`; the changed fields are in `request_id` (the row has no other free field)."""
    quarantined = isinstance(event, ToolQuarantined)
    if isinstance(event, ToolQuarantined):
        outcome, detail = ("quarantined" if event.enforced else "warned"), "changed: " + ",".join(event.fields)
    else:
        outcome, detail = "approved", "approved by an operator"
    return AuditEntry(
        at="",
        principal=None,
        method="registry/tool_quarantined" if quarantined else "registry/tool_approved",
        server=event.server,
        target=f"{event.server}{NAMESPACE_SEPARATOR}{event.tool}",
        era="-",
        transport="-",
        outcome=outcome,
        error_code=None,
        request_id=detail[:128],
        args_digest=None,
        duration_us=0,
    )


def _dropped_entry(count: int, at: datetime) -> AuditEntry:
    """A row that says records are missing here, so a gap is visible in the chain itself."""
    return AuditEntry(
        at=iso(at),
        principal=None,
        method="audit/dropped",
        server=None,
        target=None,
        era="-",
        transport="-",
        outcome="dropped",
        error_code=None,
        request_id=f"{count} records dropped: audit.max_queued reached",
        args_digest=None,
        duration_us=0,
    )
