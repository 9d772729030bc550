"""The store's schema history (Alembic), applied by `toolway.registry.migrate` when a store opens."""
