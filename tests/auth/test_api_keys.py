"""API keys in a real SQLite store: created (shown once, stored hashed), loaded, expired, revoked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from toolway.auth.api_key import ApiKeys, looks_like_key
from toolway.auth.key_store import KeyStore
from toolway.protocol.errors import AuthenticationFailed


async def test_create_load_authenticate_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'toolway.db'}"
    async with await KeyStore.open(url) as store:
        key, record = await store.create("agent-1", team="blue", roles=("reader",), scopes=("tools:call:web/*",))
        assert looks_like_key(key) and record.id in key
        keys = ApiKeys()
        keys.store = store
        assert await keys.reload() == 1
        identity = keys.authenticate(key)
        assert (identity.subject, identity.scheme, identity.team) == ("agent-1", "api_key", "blue")
        assert identity.scopes == frozenset({"tools:call:web/*"})
        with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
            keys.authenticate(key + "x")
        assert await store.revoke(record.id)
        assert not await store.revoke(record.id)  # already revoked
        keys.authenticate(key)  # still loaded: revocation takes effect at the next reload
        assert await keys.reload() == 0
        with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
            keys.authenticate(key)
        listed = await store.all()
        assert [r.id for r in listed] == [record.id] and listed[0].revoked_at is not None
    # Only the hash is stored: the key itself appears nowhere in the database.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'toolway.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM api_keys")).all()
    engine.dispose()
    assert all(key not in str(row) for row in rows)
    assert rows[0].key_hash == hashlib.sha256(key.encode()).hexdigest()


async def test_expired_keys_are_refused_by_the_injected_wall_clock(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with await KeyStore.open(f"sqlite:///{tmp_path / 'toolway.db'}") as store:
        key, _ = await store.create("agent", expires_at=now + timedelta(hours=1), now=now)
        wall = [now.timestamp()]
        keys = ApiKeys(wall=lambda: wall[0])
        keys.store = store
        await keys.reload()
        assert keys.authenticate(key).subject == "agent"
        wall[0] += 3600
        with pytest.raises(AuthenticationFailed, match="expired"):
            keys.authenticate(key)


async def test_reloads_follow_the_injected_clock(tmp_path: Path) -> None:
    class StepClock:
        def __init__(self) -> None:
            self.sleeps: list[float] = []

        def now(self) -> float:
            return 0.0

        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            if len(self.sleeps) > 2:
                raise RuntimeError("stop")

    async with await KeyStore.open(f"sqlite:///{tmp_path / 'toolway.db'}") as store:
        keys = ApiKeys()
        keys.store = store
        clock = StepClock()
        await store.create("first")
        with pytest.raises(RuntimeError, match="stop"):
            await keys.run_reloads(clock, 30.0)
        assert clock.sleeps == [30.0, 30.0, 30.0]
        assert keys.loaded == 1
