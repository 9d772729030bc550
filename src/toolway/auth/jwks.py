"""Signing keys for JWTs from a JWKS URL (RFC 7517), found directly or by OIDC discovery.

Kept in memory and refetched when older than `jwks_cache_seconds`, or when a token names
a `kid` the set does not hold (a key rotation) — but at most once per
`jwks_min_refresh_seconds`, so tokens with made-up `kid`s cannot make the gateway hammer
the issuer. One fetch at a time; a failed refetch keeps the keys it had. The set is
bounded (`jwks_max_keys`, and the document's size).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jwt
import orjson
import structlog

from toolway.clock import Clock
from toolway.config.auth import JwtConfig
from toolway.protocol.errors import AuthenticationFailed

log = structlog.get_logger("toolway.auth")

MAX_DOCUMENT_BYTES = 1024 * 1024
FETCH_SECONDS = 5.0


class JwksError(Exception):
    """The key set (or the discovery document) cannot be fetched or read."""


class JwksKeys:
    """The issuer's current signing keys, by `kid`."""

    def __init__(self, config: JwtConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._url = config.jwks_url
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self.fetches = 0  # how many times the set was fetched (for tests and logs)

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key a token's header names.

        Raises:
            AuthenticationFailed: no such key, even after a (rate-limited) refetch.
        """
        now = self._clock.now()
        stale = self._fetched_at is None or now - self._fetched_at > self._config.jwks_cache_seconds
        found = self._lookup(kid)
        if found is not None and not stale:
            return found
        await self._refresh(now)
        found = self._lookup(kid)
        if found is None:
            raise AuthenticationFailed(f"the token's signing key (kid {kid!r}) is not in the issuer's key set")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, now: float) -> None:
        async with self._lock:
            if self._attempted_at is not None and now - self._attempted_at < self._config.jwks_min_refresh_seconds:
                return  # Someone just fetched (maybe while we waited for the lock), or it failed just now.
            self._attempted_at = self._clock.now()
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._clock.now()
                self.fetches += 1
            except JwksError as exc:
                log.warning("cannot refresh the JWKS; keeping the keys already known", error=str(exc))

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        if self._url is None:
            self._url = await self._discover()
        document = await self._get_json(self._url)
        raw = document.get("keys")
        if not isinstance(raw, list):
            raise JwksError(f"{self._url} is not a JWK set (no 'keys' list)")
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in raw[: self._config.jwks_max_keys]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
                log.info("skipping a JWK the gateway cannot use", kid=entry.get("kid"), error=str(exc))
                continue
            keys[entry.get("kid")] = key
        return keys

    async def _discover(self) -> str:
        """The issuer's `jwks_uri`, from its OIDC discovery document (else RFC 8414 metadata)."""
        issuer = self._config.issuer.rstrip("/")
        problems = []
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            try:
                document = await self._get_json(issuer + suffix)
            except JwksError as exc:
                problems.append(str(exc))
                continue
            # OIDC Discovery §4.3: the document must name the issuer it was fetched for.
            if document.get("issuer") != self._config.issuer:
                raise JwksError(f"{issuer + suffix} names issuer {document.get('issuer')!r}, not the configured one")
            uri = document.get("jwks_uri")
            if not isinstance(uri, str):
                raise JwksError(f"{issuer + suffix} has no jwks_uri")
            return uri
        raise JwksError("; ".join(problems))

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_SECONDS))
        try:
            async with self._http.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise JwksError(f"{url} answered HTTP {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise JwksError(f"cannot fetch {url}: {exc or type(exc).__name__}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise JwksError(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise JwksError(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise JwksError(f"{url} is not a JSON object")
        return document

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
