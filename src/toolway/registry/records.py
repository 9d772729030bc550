"""The registry's own tables: registrations, health transitions, pinned tool definitions.

Created by the migration `0002_registry`; these are descriptions for queries. Read at
start-up and by the admin API, written in the background or on an operator's request:
never on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from toolway.registry.store import Store

_metadata = sa.MetaData()

registrations = sa.Table(
    "registrations",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("managed_by", sa.String(16), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

health_events = sa.Table(
    "health_events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("server", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
)

tool_pins = sa.Table(
    "tool_pins",
    _metadata,
    sa.Column("server", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Registration:
    """A server the registry knows: its config entry, who manages it, and whether it is on."""

    name: str
    managed_by: str  # "file": from the config file; "api": registered at run time
    enabled: bool
    config: dict[str, Any]  # the config entry as JSON (what `ServerConfig` validates)


@dataclass(frozen=True)
class HealthEvent:
    """One health transition of one server."""

    server: str
    at: datetime
    previous: str
    state: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "from": self.previous,
            "to": self.state,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Pin:
    """The approved definition of one upstream tool and its hash."""

    server: str
    name: str  # the upstream's own name
    hash: str
    definition: dict[str, Any]
    source: str  # "first_seen" | "approved"


class RegistryRecords:
    """Reads and writes the registry's tables through an open `Store`. Every method raises `StoreError`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def registrations(self) -> list[Registration]:
        async with self._store.transaction("read the registrations", write=False) as conn:
            rows = (await conn.execute(registrations.select().order_by(registrations.c.name))).mappings().all()
        return [Registration(r["name"], r["managed_by"], r["enabled"], r["config"]) for r in rows]

    async def save_registration(self, registration: Registration) -> None:
        """Insert or replace one registration (its first `created_at` is kept)."""
        now = self._store.now()
        action, lock = f"save the registration of {registration.name!r}", f"registrations:{registration.name}"
        async with self._store.transaction(action, lock=lock) as conn:
            where = registrations.c.name == registration.name
            created = (await conn.execute(sa.select(registrations.c.created_at).where(where))).scalar()
            await conn.execute(registrations.delete().where(where))
            await conn.execute(
                registrations.insert(),
                {
                    "name": registration.name,
                    "managed_by": registration.managed_by,
                    "enabled": registration.enabled,
                    "config": registration.config,
                    "created_at": created or now,
                    "updated_at": now,
                },
            )

    async def delete_registration(self, name: str) -> None:
        async with self._store.transaction(f"delete the registration of {name!r}") as conn:
            await conn.execute(registrations.delete().where(registrations.c.name == name))

    async def append_health(self, events: list[HealthEvent]) -> None:
        if not events:
            return
        rows = [
            {"server": e.server, "at": e.at, "previous": e.previous, "state": e.state, "reason": e.reason}
            for e in events
        ]
        async with self._store.transaction("record health transitions") as conn:
            await conn.execute(health_events.insert(), rows)

    async def health_history(self, server: str, limit: int = 100) -> list[HealthEvent]:
        """The most recent `limit` transitions of `server`, oldest first."""
        stmt = (
            health_events.select()
            .where(health_events.c.server == server)
            .order_by(health_events.c.id.desc())
            .limit(limit)
        )
        async with self._store.transaction(f"read the health history of {server!r}", write=False) as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            HealthEvent(r["server"], _aware(r["at"]), r["previous"], r["state"], r["reason"]) for r in reversed(rows)
        ]

    async def pins(self) -> list[Pin]:
        async with self._store.transaction("read the pinned tool definitions", write=False) as conn:
            rows = (await conn.execute(tool_pins.select())).mappings().all()
        return [Pin(r["server"], r["name"], r["hash"], r["definition"], r["source"]) for r in rows]

    async def save_pins(self, pins: list[Pin]) -> None:
        """Insert or replace pins, in one transaction."""
        if not pins:
            return
        now = self._store.now()
        async with self._store.transaction("pin tool definitions", lock="tool_pins") as conn:
            for pin in pins:
                await conn.execute(
                    tool_pins.delete().where((tool_pins.c.server == pin.server) & (tool_pins.c.name == pin.name))
                )
            await conn.execute(
                tool_pins.insert(),
                [
                    {
                        "server": p.server,
                        "name": p.name,
                        "hash": p.hash,
                        "definition": p.definition,
                        "source": p.source,
                        "pinned_at": now,
                    }
                    for p in pins
                ],
            )


def _aware(value: datetime) -> datetime:
    # SQLite keeps no zone; everything written is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
