"""Alembic's environment: always run against the connection `toolway.registry.migrate` hands over.

There is no ``alembic.ini`` and no offline mode: the gateway migrates its store itself,
inside the transaction that holds the migration lock.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
