"""The registry's store: what the gateway last learned about each upstream and its tools.

Written when an upstream connects (or fails to), read by the CLI and the admin side;
never queried on the request path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from toolway.registry import migrate


@dataclass(frozen=True)
class ToolRecord:
    server: str
    name: str  # the upstream's own name, before namespacing
    title: str | None
    description: str | None
    input_schema: dict[str, Any] | None


@dataclass(frozen=True)
class ServerRecord:
    name: str
    transport: str  # "stdio" | "streamable-http"
    endpoint: str  # url, or the command joined with spaces
    status: str  # "connected" | "unreachable" | "unknown"
    era: str | None  # "2026-07-28" or "handshake"
    protocol_version: str | None
    server_info: dict[str, Any] | None  # {"name": ..., "version": ...}
    capabilities: dict[str, Any] | None
    last_error: str | None
    updated_at: datetime | None = None
    tools: tuple[ToolRecord, ...] = ()


class StoreError(Exception):
    """The store cannot be opened, read or written; the message names the cause."""


_metadata = sa.MetaData()

_servers = sa.Table(
    "servers",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("transport", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("era", sa.String(32)),
    sa.Column("protocol_version", sa.String(32)),
    sa.Column("server_info", sa.JSON),
    sa.Column("capabilities", sa.JSON),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)

_tools = sa.Table(
    "tools",
    _metadata,
    sa.Column("server", sa.String(64), sa.ForeignKey("servers.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("title", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("input_schema", sa.JSON),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def async_url(url: str) -> str:
    """Map a config store URL to its async driver URL (aiosqlite, asyncpg).

    Raises :class:`StoreError` for schemes and drivers Toolway does not speak.
    """
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    raise StoreError(f"unsupported store URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST/DB")


class Tables:
    """What every group of store tables shares: one engine, and transactions whose failures
    name the action and the store. Open with :meth:`open`, end with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self._url = url

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to the store at ``url``, its schema migrated. Raises :class:`StoreError`."""
        return cls(await open_engine(url), url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the connection pool."""
        await self._engine.dispose()

    @asynccontextmanager
    async def _transaction(
        self, action: str, *, write: bool = True, lock: str | None = None
    ) -> AsyncIterator[AsyncConnection]:
        # A write transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE): one that
        # read first and then wrote would fail at once ("database is locked") rather than wait
        # its turn behind another writer (the audit writer, another worker).
        try:
            async with self._engine.connect() as conn:
                if write:
                    conn = await conn.execution_options(toolway_write=True)
                async with conn.begin():
                    if lock is not None:
                        await lock_key(conn, lock)
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {action} in the store at {self._url}: {cause(exc)}") from None


class Store(Tables):
    """Async access to the registry tables; open with :meth:`open`, end with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: str, now: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(engine, url)
        self._now = now

    @classmethod
    async def open(cls, url: str, *, now: Callable[[], datetime] = _utcnow) -> Self:
        """Connect to ``url``, creating the SQLite file's directory and the tables if missing.

        ``now`` returns the aware UTC time stamped on writes (tests pass a fixed clock).
        Raises :class:`StoreError` naming the URL and the cause.
        """
        return cls(await open_engine(url), url, now)

    async def record_server(self, record: ServerRecord) -> None:
        """Replace the row for ``record.name`` and all its tools in one transaction.

        ``updated_at`` is set by the store. Raises :class:`StoreError`.
        """
        row = {
            "name": record.name,
            "transport": record.transport,
            "endpoint": record.endpoint,
            "status": record.status,
            "era": record.era,
            "protocol_version": record.protocol_version,
            "server_info": record.server_info,
            "capabilities": record.capabilities,
            "last_error": record.last_error,
            "updated_at": self._now(),
        }
        tools = [
            {
                "server": record.name,
                "name": tool.name,
                "title": tool.title,
                "description": tool.description,
                "input_schema": tool.input_schema,
            }
            for tool in record.tools
        ]
        async with self._transaction(f"record server {record.name!r}", lock=f"servers:{record.name}") as conn:
            # Delete-then-insert is a portable upsert, and the tools go first because
            # the old list is replaced wholesale, never merged.
            await conn.execute(_tools.delete().where(_tools.c.server == record.name))
            await conn.execute(_servers.delete().where(_servers.c.name == record.name))
            await conn.execute(_servers.insert(), row)
            if tools:
                await conn.execute(_tools.insert(), tools)

    async def record_status(self, name: str, status: str, last_error: str | None) -> None:
        """Update a server's status and last error; does nothing if it was never recorded.

        Raises :class:`StoreError`.
        """
        async with self._transaction(f"record status of {name!r}") as conn:
            await conn.execute(
                _servers.update()
                .where(_servers.c.name == name)
                .values(status=status, last_error=last_error, updated_at=self._now())
            )

    async def forget(self, name: str) -> None:
        """Delete one server's row and its tools (it was deregistered). Raises :class:`StoreError`."""
        async with self._transaction(f"forget server {name!r}") as conn:
            await conn.execute(_tools.delete().where(_tools.c.server == name))
            await conn.execute(_servers.delete().where(_servers.c.name == name))

    async def forget_missing(self, keep: Collection[str]) -> None:
        """Delete servers (and their tools) whose name is not in ``keep``.

        Raises :class:`StoreError`.
        """
        names = list(keep)
        async with self._transaction("forget removed servers") as conn:
            await conn.execute(_tools.delete().where(_tools.c.server.not_in(names)))
            await conn.execute(_servers.delete().where(_servers.c.name.not_in(names)))

    async def list_servers(self) -> list[ServerRecord]:
        """All recorded servers sorted by name, each with its tools. Raises :class:`StoreError`."""
        async with self._transaction("list servers", write=False) as conn:
            rows = (await conn.execute(_servers.select().order_by(_servers.c.name))).mappings().all()
            tools = await self._select_tools(conn)
        by_server: dict[str, list[ToolRecord]] = {}
        for tool in tools:
            by_server.setdefault(tool.server, []).append(tool)
        return [
            ServerRecord(
                name=row["name"],
                transport=row["transport"],
                endpoint=row["endpoint"],
                status=row["status"],
                era=row["era"],
                protocol_version=row["protocol_version"],
                server_info=row["server_info"],
                capabilities=row["capabilities"],
                last_error=row["last_error"],
                updated_at=_aware(row["updated_at"]),
                tools=tuple(by_server.get(row["name"], ())),
            )
            for row in rows
        ]

    async def list_tools(self) -> list[ToolRecord]:
        """All recorded tools sorted by server, then name. Raises :class:`StoreError`."""
        async with self._transaction("list tools", write=False) as conn:
            return await self._select_tools(conn)

    async def ping(self) -> None:
        """A cheap round trip (`SELECT 1`) for readiness checks. Raises :class:`StoreError`."""
        async with self._transaction("answer a ping", write=False) as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def schema_revision(self) -> str | None:
        """The schema revision the store is at (see `toolway.registry.migrate`). Raises :class:`StoreError`."""
        async with self._transaction("read the schema revision", write=False) as conn:
            return await conn.run_sync(migrate.current)

    def transaction(
        self, action: str, *, write: bool = True, lock: str | None = None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction for the registry's other tables (`registry/records.py`).

        ``action`` completes the error message: "cannot {action} in the store at URL: cause".
        ``lock`` names what a delete-then-insert replaces, so replicas sharing the store
        take turns at it (`lock_key`).
        """
        return self._transaction(action, write=write, lock=lock)

    @property
    def now(self) -> Callable[[], datetime]:
        """The store's clock for write time stamps."""
        return self._now

    @staticmethod
    async def _select_tools(conn: AsyncConnection) -> list[ToolRecord]:
        result = await conn.execute(_tools.select().order_by(_tools.c.server, _tools.c.name))
        return [ToolRecord(**row) for row in result.mappings().all()]


async def lock_key(conn: AsyncConnection, key: str) -> None:
    """Hold a lock on `key` until the transaction ends, so replicas sharing a PostgreSQL store
    take turns at replacing the same rows (two delete-then-inserts at once would both insert,
    and one would fail on the primary key). SQLite needs none: a writer holds the whole file."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def open_engine(
    url: str, metadata: sa.MetaData | None = None, sqlite_events: dict[str, Callable[..., Any]] | None = None
) -> AsyncEngine:
    """An engine for the store at ``url``, its schema migrated to the newest revision.

    Creates a SQLite file's directory. On SQLite every connection runs in WAL mode (the
    CLI reads while gateways write) with foreign keys on, and transactions are begun by
    Toolway: a connection with the execution option ``toolway_write=True`` begins with
    ``BEGIN IMMEDIATE`` (it takes the write lock before it reads). ``metadata``'s tables
    are also created if missing, for code that predates the migrations; ``sqlite_events``
    are extra engine listeners attached only on SQLite.

    Raises:
        StoreError: naming the URL and the cause.
    """
    driver_url = async_url(url)
    try:
        parsed = make_url(driver_url)
        database = parsed.database
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite and database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(driver_url)
    except (OSError, ArgumentError) as exc:
        raise StoreError(f"cannot open the store at {url}: {exc}") from None
    if sqlite:
        sa.event.listen(engine.sync_engine, "connect", _sqlite_connect)
        sa.event.listen(engine.sync_engine, "begin", _sqlite_begin)
        for event, listener in (sqlite_events or {}).items():
            sa.event.listen(engine.sync_engine, event, listener)
    try:
        if metadata is not None or not await _at_head(engine):
            # Only a store that needs work takes the write lock: a CLI reading while a busy gateway
            # writes must not queue behind its writes (or time out waiting) for a no-op.
            async with engine.connect() as conn:
                conn = await conn.execution_options(toolway_write=True)
                async with conn.begin():
                    await lock_key(conn, "toolway:migrate")  # replicas starting at once migrate one at a time
                    await conn.run_sync(migrate.upgrade)
                    if metadata is not None:
                        await conn.run_sync(metadata.create_all)
    except (OSError, SQLAlchemyError) as exc:
        await engine.dispose()
        raise StoreError(f"cannot open the store at {url}: {cause(exc)}") from None
    return engine


async def _at_head(engine: AsyncEngine) -> bool:
    """Is the store's schema already at the newest revision? (A plain read: no lock taken.)"""
    async with engine.connect() as conn:
        async with conn.begin():
            return await conn.run_sync(migrate.current) == migrate.head()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN would be DEFERRED and skip DDL; Toolway begins itself (below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")  # tools follow their server on delete
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # A write transaction takes the write lock before it reads, so two processes doing
    # read-then-write at once (the audit chain's head, a migration) queue up instead of racing.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("toolway_write") else "BEGIN")


def _aware(value: datetime | None) -> datetime | None:
    # SQLite keeps no zone; everything written is UTC, so say so on the way out.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def cause(exc: BaseException) -> str:
    # SQLAlchemy wraps driver errors; the driver's message is the useful part.
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
