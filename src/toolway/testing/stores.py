"""Stores for tests: a SQLite file, or a fresh PostgreSQL database of the test's own.

    async with temporary_store("postgresql", tmp_path) as url:
        async with running_gateway(servers=[...], store_dir=tmp_path, store=url) as gw: ...

Each PostgreSQL store is a new database (``toolway_<random hex>``) on the server at
``TOOLWAY_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
dropped on exit, so tests running at once on one server never see each other's rows.
A PostgreSQL server that cannot be reached is an error, never a skip: a suite that
claims to pass on PostgreSQL must have run there.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

__all__ = ["BACKENDS", "Backend", "PostgresUnavailable", "temporary_store"]

Backend = Literal["sqlite", "postgresql"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql")
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


class PostgresUnavailable(RuntimeError):
    """The test PostgreSQL server cannot be reached; the message says where it was looked for."""


@contextlib.asynccontextmanager
async def temporary_store(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty store on ``backend``; a PostgreSQL database is dropped afterwards.

    Raises:
        PostgresUnavailable: ``backend`` is "postgresql" and its server does not answer.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'toolway.db'}"
        return
    import asyncpg  # the store's own driver

    server = os.environ.get("TOOLWAY_TEST_POSTGRES", DEFAULT_SERVER)
    name = f"toolway_{uuid.uuid4().hex}"
    try:
        admin = await asyncpg.connect(server, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {server} ({exc}); the store tests need it "
            "(set TOOLWAY_TEST_POSTGRES to another server)"
        ) from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = server.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            # FORCE: a gateway that is being torn down may still hold a pooled connection.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
