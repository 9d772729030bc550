"""JWT bearer tokens (RFC 7519): HS256, RS256, ES256 with keys from a JWKS, a PEM file or a secret.

Checked: the signature (with an algorithm from the configured list only — never `none`,
never one the token picks for itself), `iss`, `aud` (must name this gateway: the
configured audiences, or the URL of the very endpoint called), `exp` and `nbf` against
the injected wall clock with a small leeway, and the required claims. Claims map to the
identity's subject, team, roles and scopes as configured.

Verifying a signature costs ~150 µs (FIELD-NOTES), so verified tokens are kept, by their
text, until they expire (bounded, least recently used out first); a repeat re-checks
only the clock and the audience.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from toolway.auth.identity import Identity
from toolway.auth.jwks import JwksKeys
from toolway.auth.setup_errors import JwtConfigError
from toolway.clock import Clock
from toolway.config.auth import JwtConfig
from toolway.protocol.errors import AuthenticationFailed

WallClock = Callable[[], float]  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: Identity
    audiences: frozenset[str]
    exp: float | None
    nbf: float | None


class JwtAuthenticator:
    """Turns a bearer JWT into an `Identity`, or raises `AuthenticationFailed` saying why."""

    def __init__(
        self, config: JwtConfig, audiences: frozenset[str], *, clock: Clock, wall: WallClock = time.time
    ) -> None:
        """Raises JwtConfigError when a configured key file or secret is missing."""
        self._config = config
        self._audiences = audiences
        self._wall = wall
        self._algorithms = list(config.algorithms)
        self._required = sorted({*config.required_claims, "iss"})
        self._static: Any = None
        self.jwks: JwksKeys | None = None
        if config.secret_env:
            secret = os.environ.get(config.secret_env)
            if not secret:
                raise JwtConfigError(f"auth.jwt.secret_env: the environment variable {config.secret_env} is not set")
            if len(secret.encode()) < 32:  # RFC 7518 §3.2: an HS256 key at least as long as the hash
                raise JwtConfigError(f"auth.jwt.secret_env: {config.secret_env} must hold at least 32 bytes")
            self._static = secret.encode()
        elif config.public_key_file:
            try:
                self._static = Path(config.public_key_file).read_bytes()
            except OSError as exc:
                raise JwtConfigError(f"auth.jwt.public_key_file: cannot read {config.public_key_file}: {exc}") from None
        else:
            self.jwks = JwksKeys(config, clock)
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    async def authenticate(self, token: str, endpoint: str | None = None) -> Identity:
        """The identity the token proves; `endpoint` is the called endpoint's URL (also a valid audience)."""
        verified = self._cache.get(token)
        if verified is None:
            verified = await self._verify(token)
            if self._config.token_cache_size:
                self._cache[token] = verified
                if len(self._cache) > self._config.token_cache_size:
                    self._cache.popitem(last=False)
        try:
            self._check_time(verified)
        except AuthenticationFailed:
            self._cache.pop(token, None)
            raise
        if not (verified.audiences & self._audiences) and (endpoint is None or endpoint not in verified.audiences):
            raise AuthenticationFailed(
                f"the token's audience {sorted(verified.audiences)} does not name this gateway "
                f"({' or '.join(sorted(self._audiences | ({endpoint} if endpoint else set())))})"
            )
        return verified.identity

    def _check_time(self, verified: _Verified) -> None:
        now, leeway = self._wall(), self._config.leeway_seconds
        if verified.exp is not None and now > verified.exp + leeway:
            raise AuthenticationFailed("the token has expired")
        if verified.nbf is not None and now + leeway < verified.nbf:
            raise AuthenticationFailed("the token is not valid yet (nbf is in the future)")

    async def _verify(self, token: str) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthenticationFailed(f"the bearer token is not a well-formed JWT: {exc}") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthenticationFailed(f"the token's algorithm {alg!r} is not accepted (allowed: {self._algorithms})")
        key: Any = self._static
        if self.jwks is not None:
            kid = header.get("kid")
            key = await self.jwks.key(kid if isinstance(kid, str) else None)
        try:
            # exp/nbf are checked against the injected wall clock (below), aud per endpoint.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._config.issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "require": self._required,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature does not verify") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed(f"the token was not issued by {self._config.issuer}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"the token lacks the required claim {exc.claim!r}") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as exc:
            raise AuthenticationFailed(f"the token is invalid: {exc}") from None
        verified = _Verified(
            identity=self._identity(claims),
            audiences=frozenset(_strings(claims.get("aud"))),
            exp=_number(claims, "exp"),
            nbf=_number(claims, "nbf"),
        )
        self._check_time(verified)
        return verified

    def _identity(self, claims: dict[str, Any]) -> Identity:
        mapping = self._config.claims
        subject = claims.get(mapping.subject)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed(f"the token's {mapping.subject!r} claim is not a non-empty string")
        team = claims.get(mapping.team) if mapping.team else None
        return Identity(
            subject=subject,
            scheme="jwt",
            team=team if isinstance(team, str) else None,
            roles=frozenset(_strings(claims.get(mapping.roles))) if mapping.roles else frozenset(),
            scopes=frozenset(_strings(claims.get(mapping.scopes))),
            claims=claims,
        )

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()


def _strings(value: Any) -> list[str]:
    """A space-separated string (RFC 8693 `scope`) or a list of strings, as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationFailed(f"the token's {name!r} claim is not a number")
    return float(value)
