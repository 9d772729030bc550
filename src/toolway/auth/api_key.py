"""API keys: `twk_…` keys created by `toolway keys create`, each bound to an identity.

The running gateway keeps the active keys in memory, by hash, so checking a key is a
SHA-256 and a dict lookup — never a database query. It re-reads the table every
`auth.api_keys.reload_seconds` (on the injected clock) and at once on
`POST /admin/keys/reload`, which `toolway keys create|revoke` calls when the gateway's
admin port answers. A revoked key therefore stops working within `reload_seconds` at
the latest, immediately when the CLI reached the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import structlog

from toolway.auth.identity import Identity
from toolway.auth.key_store import KEY_PREFIX, ApiKeyRecord, KeyStore, hash_key
from toolway.clock import Clock
from toolway.protocol.errors import AuthenticationFailed
from toolway.registry.store import StoreError

log = structlog.get_logger("toolway.auth")


def looks_like_key(credential: str) -> bool:
    """Is this bearer credential an API key (rather than a JWT)?"""
    return credential.startswith(KEY_PREFIX)


class ApiKeys:
    """The active keys, in memory; `reload` swaps the whole table at once."""

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self.store: KeyStore | None = None  # attached when the gateway opens its store
        self._wall = wall
        self._by_hash: dict[str, tuple[Identity, float | None]] = {}
        self.loaded = 0  # keys in the table after the last reload

    async def reload(self) -> int:
        """Re-read the active keys. Returns how many there are. Raises StoreError."""
        if self.store is None:
            raise StoreError("the API key table is not open")
        records = await self.store.active()
        self._by_hash = {record.key_hash: (_identity(record), _epoch(record.expires_at)) for record in records}
        self.loaded = len(self._by_hash)
        return self.loaded

    def authenticate(self, key: str) -> Identity:
        """The identity a key is bound to. Raises AuthenticationFailed: unknown, revoked or expired."""
        found = self._by_hash.get(hash_key(key))
        if found is None:
            raise AuthenticationFailed("unknown or revoked API key")
        identity, expires = found
        if expires is not None and self._wall() >= expires:
            raise AuthenticationFailed("the API key has expired")
        return identity

    async def run_reloads(self, clock: Clock, interval: float) -> None:
        """Reload every `interval` seconds, forever (a task in the gateway's task group)."""
        while True:
            await clock.sleep(interval)
            try:
                await self.reload()
            except StoreError as exc:
                log.warning("cannot reload API keys; keeping the ones loaded", error=str(exc))


def _identity(record: ApiKeyRecord) -> Identity:
    return Identity(
        subject=record.subject,
        scheme="api_key",
        team=record.team,
        roles=frozenset(record.roles),
        scopes=frozenset(record.scopes),
        claims={"key_id": record.id},
    )


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None
