"""Bring a store's schema up to date: Alembic, run by the gateway itself whenever a store opens.

Every process that opens a store runs this; it is a no-op when the schema is current.
Several processes starting at once (``toolway serve --workers N``, replicas on one
PostgreSQL) take a lock first, so exactly one of them migrates and the others find
the work done: SQLite's write lock (``BEGIN IMMEDIATE``), PostgreSQL's transaction-scoped
advisory lock. On PostgreSQL the DDL is transactional, so a failed migration leaves
nothing half-done.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPT_LOCATION = "toolway.registry:migrations"
# Any constant shared by every Toolway process: the key of the advisory lock ("tool" in ASCII).
_PG_LOCK_KEY = 0x746F6F6C


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of Toolway knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: sa.Connection) -> str | None:
    """The revision the store is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: sa.Connection) -> None:
    """Migrate to the newest revision inside the caller's (write) transaction.

    Raises whatever the database raises (SQLAlchemy errors); the caller names the store.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    if current(connection) == head():
        return
    command.upgrade(_config(connection), "head")
