"""The API key table in the store: created and revoked by `toolway keys`, read by the gateway.

Only a key's SHA-256 is stored; the key itself is shown once, at creation. The table is
created by the store's migration `0003_api_keys`; its description here is for queries. Never read on the request path:
the gateway loads the active keys into memory (`auth/api_key.py`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from toolway.registry.store import Tables

KEY_PREFIX = "twk_"

_metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public: shown by `keys list`, used by `keys revoke`
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("team", sa.String(255)),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    key_hash: str
    subject: str
    team: str | None
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """For `toolway keys list --json`: everything but the hash."""
        return {
            "id": self.id,
            "subject": self.subject,
            "team": self.team,
            "roles": list(self.roles),
            "scopes": list(self.scopes),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
        }


def hash_key(key: str) -> str:
    """The stored form of a key.

    SHA-256, not bcrypt/argon2: a key is 256 random bits, so it cannot be guessed from
    its hash however fast the hash is, and a slow hash would cost milliseconds on every
    request for no gain (slow hashes protect low-entropy passwords).
    """
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(public id, the key itself): `twk_<id>_<secret>`, the prefix telling it apart from a JWT."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class KeyStore(Tables):
    """The `api_keys` table; open with `open`, end with `close`. Every method raises `StoreError`."""

    async def create(
        self,
        subject: str,
        *,
        team: str | None = None,
        roles: tuple[str, ...] = (),
        scopes: tuple[str, ...] = (),
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """A new key bound to this identity: (the key — show it once —, its record)."""
        key_id, key = new_key()
        record = ApiKeyRecord(
            id=key_id,
            key_hash=hash_key(key),
            subject=subject,
            team=team,
            roles=tuple(roles),
            scopes=tuple(scopes),
            created_at=now or datetime.now(UTC),
            expires_at=expires_at,
            revoked_at=None,
        )
        row = {**_columns(record), "roles": list(record.roles), "scopes": list(record.scopes)}
        async with self._transaction("create an API key") as conn:
            await conn.execute(api_keys.insert(), row)
        return key, record

    async def all(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        async with self._transaction("list API keys", write=False) as conn:
            rows = (await conn.execute(api_keys.select().order_by(api_keys.c.created_at))).mappings().all()
        return [_record(row) for row in rows]

    async def active(self) -> list[ApiKeyRecord]:
        """Keys not revoked (expiry is checked per request, against the clock)."""
        async with self._transaction("load API keys", write=False) as conn:
            rows = (await conn.execute(api_keys.select().where(api_keys.c.revoked_at.is_(None)))).mappings().all()
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str, *, now: datetime | None = None) -> bool:
        """Revoke a key; False when no unrevoked key has this id."""
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now or datetime.now(UTC))
        )
        async with self._transaction("revoke an API key") as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)


def _columns(record: ApiKeyRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in ApiKeyRecord.__dataclass_fields__}


def _record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        key_hash=row["key_hash"],
        subject=row["subject"],
        team=row["team"],
        roles=tuple(row["roles"] or ()),
        scopes=tuple(row["scopes"] or ()),
        created_at=_aware(row["created_at"]),
        expires_at=_aware(row["expires_at"]) if row["expires_at"] is not None else None,
        revoked_at=_aware(row["revoked_at"]) if row["revoked_at"] is not None else None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite keeps no zone


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None
