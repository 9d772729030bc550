"""Bring a store's schema up to date: Alembic, run by the gateway itself whenever a store opens.

Every process that opens a store runs this; it is a no-op when the schema is current.
Several processes starting at once (``toolway serve --workers N``, replicas on one
PostgreSQL) take a lock first, so exactly one of them migrates and the others find
the work done: SQLite's write lock (``BEGIN IMMEDIATE``), PostgreSQL's transaction-scoped
advisory lock. On PostgreSQL the DDL is transactional, so a failed migration leaves
nothing half-done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "toolway.registry:migrations"
# The newest revision in `migrations/versions/`. Kept as a constant so that opening a store that
# is already current reads one row and never imports Alembic (~10 MB of memory for a no-op);
# `tests/registry/test_migrations_head.py` fails when a new migration is added without it.
HEAD = "0003_api_keys"
# Any constant shared by every Toolway process: the key of the advisory lock ("tool" in ASCII).
_PG_LOCK_KEY = 0x746F6F6C
_VERSION_TABLE = "alembic_version"


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of Toolway knows."""
    return HEAD


def script_head() -> str | None:
    """The newest revision among the migration scripts themselves (what `HEAD` must equal)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current(connection: sa.Connection) -> str | None:
    """The revision the store is at (None: never migrated). A plain read of Alembic's version table."""
    if not sa.inspect(connection).has_table(_VERSION_TABLE):
        return None
    rows = connection.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def upgrade(connection: sa.Connection) -> None:
    """Migrate to the newest revision inside the caller's (write) transaction.

    Raises whatever the database raises (SQLAlchemy errors); the caller names the store.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    if current(connection) == head():
        return
    from alembic import command

    command.upgrade(_config(connection), "head")
