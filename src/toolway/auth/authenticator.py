"""The authenticator: tries the enabled schemes in the configured order, one identity out.

A request's credentials decide which scheme looks at it: `Authorization: Bearer twk_…`
(or the API key header) is an API key, any other bearer token a JWT, a verified client
certificate mTLS. The first enabled scheme, in config order, that finds its credential
decides; a credential that is presented and refused is refused — the gateway never falls
back to a weaker one. No credential at all is a 401 without an error code (RFC 6750 §3.1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from toolway.auth.api_key import ApiKeys, looks_like_key
from toolway.auth.identity import Identity
from toolway.auth.mtls import PEER_KEY, MtlsAuthenticator, PeerCertificate
from toolway.auth.oauth import ProtectedResource
from toolway.clock import Clock
from toolway.config.auth import AuthConfig
from toolway.protocol.errors import AuthenticationFailed

if TYPE_CHECKING:
    from toolway.auth.jwt import JwtAuthenticator


class Authenticator:
    """Every enabled scheme, built once from the config."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        clock: Clock,
        api_keys: ApiKeys | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """Raises JwtConfigError when a configured JWT key cannot be read."""
        self.schemes = tuple(config.schemes)
        self.resource = ProtectedResource(config)
        self.api_keys = api_keys if "api_key" in self.schemes else None
        self._key_header = config.api_keys.header.lower() if config.api_keys.header else None
        self.jwt: JwtAuthenticator | None = None
        if "jwt" in self.schemes and config.jwt is not None:
            from toolway.auth.jwt import JwtAuthenticator  # PyJWT loads only when JWT is configured

            self.jwt = JwtAuthenticator(config.jwt, self.resource.audiences, clock=clock, wall=wall)
        self.mtls = MtlsAuthenticator(config.mtls) if "mtls" in self.schemes and config.mtls is not None else None

    async def authenticate(self, headers: Mapping[str, str], tls: Mapping[str, Any] | None, path: str) -> Identity:
        """The caller's identity at endpoint `path`.

        Raises:
            AuthenticationFailed: no credentials, malformed ones, or refused ones; the message says which.
        """
        bearer = _bearer(headers.get("authorization"))
        key = headers.get(self._key_header) if self._key_header else None
        peer = tls.get(PEER_KEY) if tls is not None else None
        for scheme in self.schemes:
            if scheme == "api_key" and self.api_keys is not None:
                if key:
                    return self.api_keys.authenticate(key)
                if bearer is not None and looks_like_key(bearer):
                    return self.api_keys.authenticate(bearer)
            elif scheme == "jwt" and self.jwt is not None:
                if bearer is not None and not looks_like_key(bearer):
                    return await self.jwt.authenticate(bearer, self.resource.endpoint_url(path))
            elif scheme == "mtls" and self.mtls is not None and isinstance(peer, PeerCertificate):
                return self.mtls.authenticate(peer)
        if bearer is not None:
            kind = "an API key" if looks_like_key(bearer) else "a JWT"
            raise AuthenticationFailed(f"the bearer token is {kind}, and that scheme is not enabled here")
        raise AuthenticationFailed(f"authentication required ({', '.join(self.schemes)})", error=None)

    async def close(self) -> None:
        if self.jwt is not None:
            await self.jwt.close()


def _bearer(value: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`. Raises AuthenticationFailed if malformed."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'", error="invalid_request")
    return token
