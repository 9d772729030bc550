"""The identity every authentication scheme produces and every authorization rule reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    `subject` is the stable principal id (an agent name, a JWT `sub`, a certificate's
    subject); it is what audit records and session bindings name. `scheme` says how it
    was proven ("api_key", "jwt", "mtls", "none" for an unauthenticated gateway, "stdio"
    for the local operator of `toolway stdio`).
    """

    subject: str
    scheme: str
    team: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def session_principal(identity: Identity | None) -> str | None:
    """What a handshake-era session (or SSE connection) is bound to: the scheme and subject
    that opened it; None on a gateway without authentication."""
    return None if identity is None else f"{identity.scheme}:{identity.subject}"
