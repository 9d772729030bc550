"""The audit table: an append-only hash chain of what callers did, in the store.

Each row stores the previous row's hash and its own, a SHA-256 over the previous hash
and the row's canonical JSON content. Editing a row breaks its own hash; deleting one
breaks the link of the row after it. Rewriting a row *and* every hash after it, or
cutting rows off the end, is not detectable from the table alone: exports (which carry
the hashes) kept elsewhere anchor the chain.

Appends read the chain's head inside a write-locked transaction (`BEGIN IMMEDIATE` on
SQLite, a table lock on PostgreSQL), so several gateway processes on one store extend one chain, never fork it.
The audit table has its own engine: it is written by a background writer and read by
the CLI and the admin API, never on the request path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from toolway.registry.store import Tables

GENESIS = "0" * 64  # the "previous hash" of the first row
_PAGE = 1000

# The table itself is created by the store's migrations (0001_initial); this describes it for queries.
_metadata = sa.MetaData()

audit_log = sa.Table(
    "audit_log",
    _metadata,
    # AUTOINCREMENT: ids are never reused, so a deleted last row leaves a visible gap.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False, index=True),  # ISO 8601 UTC, fixed width
    sa.Column("principal", sa.String(255), index=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("server", sa.String(64)),
    sa.Column("target", sa.Text, index=True),
    sa.Column("era", sa.String(16), nullable=False),
    sa.Column("transport", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_code", sa.Integer),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("args_digest", sa.String(64)),
    sa.Column("duration_us", sa.BigInteger, nullable=False),
    sa.Column("client", sa.String(128)),  # from where: the peer address, or "stdio"
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sqlite_autoincrement=True,
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited call: who, what, when, from where, how it ended. Exactly what is hashed."""

    at: str  # when the call finished, `YYYY-MM-DDTHH:MM:SS.ffffffZ`
    principal: str | None
    method: str
    server: str | None
    target: str | None  # namespaced tool or prompt name, or resource URI
    era: str
    transport: str
    outcome: str  # "ok" | "tool_error" | "error" | "dropped"
    error_code: int | None
    request_id: str
    args_digest: str | None  # SHA-256 of the canonical JSON of the arguments; never the arguments
    duration_us: int
    client: str | None = None  # from where: the client's address (host:port), or "stdio"

    def canonical(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    entry: AuditEntry
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self.entry), "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where verification failed: the first bad row's id and what is wrong with it."""

    row_id: int
    reason: str


def iso(at: datetime) -> str:
    """The audit table's time format: UTC, microseconds, fixed width (so text order is time order)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(value: str) -> str:
    """An ISO 8601 time (a date, or a time with or without a zone; none means UTC) in the table's format.

    Raises:
        ValueError: not an ISO 8601 date or time.
    """
    at = datetime.fromisoformat(value.strip())
    return iso(at if at.tzinfo is not None else at.replace(tzinfo=UTC))


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + entry.canonical()).hexdigest()


_ENTRY_FIELDS = tuple(AuditEntry.__dataclass_fields__)


class AuditStore(Tables):
    """The audit table; open with :meth:`open`, end with :meth:`close`. Every method raises `StoreError`."""

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        """Add ``entries`` to the end of the chain, in order, in one transaction."""
        if not entries:
            return
        async with self._transaction("append audit records") as conn:
            if conn.dialect.name == "postgresql":
                # PostgreSQL's counterpart of SQLite's BEGIN IMMEDIATE: one appender at a time.
                await conn.execute(sa.text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
            head = (await conn.execute(sa.select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1))).scalar()
            # The chain's hashing is CPU work: off the event loop (the transaction holds the lock).
            rows = await asyncio.to_thread(_chained_rows, head or GENESIS, entries)
            await conn.execute(audit_log.insert(), rows)

    async def query(
        self,
        *,
        principal: str | None = None,
        target: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRow]:
        """Matching rows, oldest first; with ``limit``, the most recent ``limit`` of them.

        ``since`` is an `AuditEntry.at`-formatted UTC time; rows at or after it match.
        """
        stmt = audit_log.select()
        if principal is not None:
            stmt = stmt.where(audit_log.c.principal == principal)
        if target is not None:
            stmt = stmt.where(audit_log.c.target == target)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= since)
        stmt = stmt.order_by(audit_log.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._transaction("query the audit log", write=False) as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_row(r) for r in reversed(rows)]

    async def rows(self, since: str | None = None) -> AsyncIterator[AuditRow]:
        """Every row in chain order, read a page at a time (one short transaction each)."""
        last = 0
        while True:
            stmt = audit_log.select().where(audit_log.c.id > last).order_by(audit_log.c.id).limit(_PAGE)
            if since is not None:
                stmt = stmt.where(audit_log.c.at >= since)
            async with self._transaction("read the audit log", write=False) as conn:
                page = (await conn.execute(stmt)).mappings().all()
            for mapping in page:
                yield _row(mapping)
            if len(page) < _PAGE:
                return
            last = page[-1]["id"]

    async def verify(self) -> tuple[int, ChainBreak | None]:
        """Walk the chain: (rows checked, the first break or None when it is intact)."""
        prev, last_id, count = GENESIS, 0, 0
        async for row in self.rows():
            if row.prev_hash != prev and row.id != last_id + 1:
                missing = f"row {last_id + 1}" if row.id == last_id + 2 else f"rows {last_id + 1}-{row.id - 1}"
                return count, ChainBreak(last_id + 1, f"{missing} deleted (row {row.id} does not follow row {last_id})")
            if chain_hash(row.prev_hash, row.entry) != row.hash:
                return count, ChainBreak(row.id, f"row {row.id} edited (its content does not match its hash)")
            if row.prev_hash != prev:
                if last_id == 0:
                    return count, ChainBreak(row.id, f"row {row.id} edited (it does not start the chain)")
                reason = f"row {last_id} rewritten (row {row.id} was chained to a different hash)"
                return count, ChainBreak(last_id, reason)
            prev, last_id, count = row.hash, row.id, count + 1
        return count, None


def _chained_rows(prev: str, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        digest = chain_hash(prev, entry)
        rows.append({**asdict(entry), "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


def _row(mapping: Any) -> AuditRow:
    entry = AuditEntry(**{name: mapping[name] for name in _ENTRY_FIELDS})
    return AuditRow(id=mapping["id"], entry=entry, prev_hash=mapping["prev_hash"], hash=mapping["hash"])
