"""The registry store against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toolway.registry import ServerRecord, Store, StoreError, ToolRecord, migrate
from toolway.registry.store import async_url

T0 = datetime(2026, 7, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def server(name: str, *tools: str, status: str = "connected") -> ServerRecord:
    return ServerRecord(
        name=name,
        transport="stdio",
        endpoint="python -m demo",
        status=status,
        era="handshake",
        protocol_version="2025-06-18",
        server_info={"name": f"{name}-server", "version": "1.0"},
        capabilities={"tools": {"listChanged": True}},
        last_error=None,
        tools=tuple(ToolRecord(name, tool, tool.title(), f"Does {tool}.", {"type": "object"}) for tool in tools),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with await Store.open(store_url, now=clock) as opened:
        yield opened


async def test_open_creates_the_directory_and_file(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/a/b/toolway.db")
    await store.close()
    assert (tmp_path / "a" / "b" / "toolway.db").is_file()


async def test_record_and_read_back(store: Store) -> None:
    await store.record_server(server("files", "write", "read"))

    [record] = await store.list_servers()
    # Tools come back sorted by name, and the store stamps the time.
    assert record == replace(server("files", "read", "write"), updated_at=T0)


async def test_re_recording_replaces_the_tools(store: Store, clock: FakeClock) -> None:
    await store.record_server(server("files", "read", "write"))
    clock.now = datetime(2026, 7, 29, tzinfo=UTC)
    await store.record_server(server("files", "stat"))

    [record] = await store.list_servers()
    assert [tool.name for tool in record.tools] == ["stat"]
    assert record.updated_at == clock.now
    assert [tool.name for tool in await store.list_tools()] == ["stat"]


async def test_record_status_updates_only_status_error_and_time(store: Store, clock: FakeClock) -> None:
    await store.record_server(server("files", "read"))
    clock.now = datetime(2026, 8, 1, tzinfo=UTC)
    await store.record_status("files", "unreachable", "connection refused")

    [record] = await store.list_servers()
    assert (record.status, record.last_error, record.updated_at) == (
        "unreachable",
        "connection refused",
        clock.now,
    )
    assert record.protocol_version == "2025-06-18"
    assert len(record.tools) == 1


async def test_record_status_of_an_unknown_server_is_ignored(store: Store) -> None:
    await store.record_status("ghost", "unreachable", "no such server")
    assert await store.list_servers() == []


async def test_forget_missing_drops_servers_and_their_tools(store: Store) -> None:
    for name in ("a", "b", "c"):
        await store.record_server(server(name, "t"))
    await store.forget_missing({"b"})

    assert [record.name for record in await store.list_servers()] == ["b"]
    assert [(tool.server, tool.name) for tool in await store.list_tools()] == [("b", "t")]

    await store.forget_missing([])
    assert await store.list_servers() == []
    assert await store.list_tools() == []


async def test_listing_is_sorted(store: Store) -> None:
    await store.record_server(server("web", "search", "fetch"))
    await store.record_server(server("files", "write", "read"))

    assert [record.name for record in await store.list_servers()] == ["files", "web"]
    assert [(tool.server, tool.name) for tool in await store.list_tools()] == [
        ("files", "read"),
        ("files", "write"),
        ("web", "fetch"),
        ("web", "search"),
    ]


async def test_data_survives_reopening(store_url: str) -> None:
    url = store_url
    async with await Store.open(url) as store:
        await store.record_server(server("files", "read"))
    async with await Store.open(url) as store:
        [record] = await store.list_servers()
    assert record.tools[0].input_schema == {"type": "object"}
    assert record.updated_at is not None and record.updated_at.tzinfo is not None


async def test_postgresql_urls_use_the_asyncpg_driver() -> None:
    assert async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    with pytest.raises(StoreError, match="unsupported store URL"):
        async_url("mysql://u@h/db")


async def test_an_unreachable_postgresql_names_the_url() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"
    with pytest.raises(StoreError, match=f"cannot open the store at {url}"):
        await Store.open(url)


async def test_migrations_run_at_open_and_only_once(store_url: str) -> None:
    async with await Store.open(store_url) as first:
        assert await first.schema_revision() == migrate.head()
    # A second open (another worker, the CLI) finds the schema current and changes nothing.
    async with await Store.open(store_url) as again:
        assert await again.schema_revision() == migrate.head()


async def test_a_store_from_before_the_migrations_is_adopted(tmp_path: Path) -> None:
    # What `create_all` made before the schema had a history: the tables, no alembic_version.
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE servers (name VARCHAR(64) PRIMARY KEY, transport VARCHAR(32) NOT NULL, "
            "endpoint TEXT NOT NULL, status VARCHAR(32) NOT NULL, era VARCHAR(32), protocol_version "
            "VARCHAR(32), server_info JSON, capabilities JSON, last_error TEXT, updated_at DATETIME)"
        )
        db.execute("INSERT INTO servers (name, transport, endpoint, status) VALUES ('old', 'stdio', 'x', 'connected')")
    async with await Store.open(f"sqlite:///{path}") as store:
        assert [record.name for record in await store.list_servers()] == ["old"]
        assert await store.schema_revision() == migrate.head()


async def test_unopenable_path_names_the_url(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/toolway.db"
    with pytest.raises(StoreError, match=f"cannot open the store at {url}"):
        await Store.open(url)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "toolway.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the store at"):
        await Store.open(f"sqlite:///{garbage}")
