"""A token issuer on loopback for tests: real keys, a real JWKS endpoint, real signed JWTs.

async with running_issuer() as issuer:              # aiohttp on 127.0.0.1, port 0
    token = issuer.token(sub="agent-1", aud=GATEWAY, scope="tools:call:web/*")
    issuer.rotate()                                  # a new signing key under a new kid

Serves `/.well-known/openid-configuration` (issuer, jwks_uri) and `/jwks.json`, and counts
JWKS requests so tests can see refreshes happen (or not).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["LoopbackIssuer", "SigningKey", "running_issuer"]


@dataclass
class SigningKey:
    kid: str
    alg: str  # "RS256" or "ES256"
    private: Any

    @classmethod
    def generate(cls, alg: str = "RS256") -> SigningKey:
        private: Any = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        return cls(kid=secrets.token_hex(4), alg=alg, private=private)

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        data: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass
class LoopbackIssuer:
    url: str  # the issuer identifier (its base URL)
    keys: list[SigningKey] = field(default_factory=list)  # published in the JWKS
    jwks_requests: int = 0

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """Publish a new key and sign with it from now on (older keys stay published)."""
        key = SigningKey.generate(alg)
        self.keys.append(key)
        return key

    def token(
        self,
        *,
        key: SigningKey | None = None,
        lifetime: float = 300.0,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A JWT signed with `key` (default: the newest), `iss` this issuer, `iat`/`exp` from now,
        and `claims` on top (pass `exp=None` to leave a claim out)."""
        key = key or self.keys[-1]
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.url, "iat": now, "exp": now + int(lifetime), **claims}
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})

    def _routes(self) -> web.Application:
        app = web.Application()

        async def discovery(_: web.Request) -> web.Response:
            return web.json_response({"issuer": self.url, "jwks_uri": self.jwks_url})

        async def jwks(_: web.Request) -> web.Response:
            self.jwks_requests += 1
            return web.json_response({"keys": [key.jwk() for key in self.keys]})

        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks.json", jwks)
        return app


@contextlib.asynccontextmanager
async def running_issuer(alg: str = "RS256") -> AsyncIterator[LoopbackIssuer]:
    """Serve a `LoopbackIssuer` with one signing key on 127.0.0.1 (port 0) for the block."""
    issuer = LoopbackIssuer(url="")
    runner = web.AppRunner(issuer._routes(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        issuer.url = f"http://127.0.0.1:{port}"
        issuer.rotate(alg)
        yield issuer
    finally:
        await runner.cleanup()
