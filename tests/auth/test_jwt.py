"""JWT validation against a real JWKS endpoint on loopback, with tokens signed by real test keys.

Every rejection path the issue names: expired, not yet valid, wrong audience, wrong issuer,
unknown kid, bad signature, missing claim, a disallowed algorithm, a garbled token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import pytest_asyncio

from toolway.auth.jwt import JwtAuthenticator, JwtConfigError
from toolway.clock import MonotonicClock
from toolway.config.auth import JwtConfig
from toolway.protocol.errors import AuthenticationFailed
from toolway.testing.issuer import LoopbackIssuer, SigningKey, running_issuer

GATEWAY = "https://gw.example.test/mcp"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest_asyncio.fixture
async def issuer() -> AsyncIterator[LoopbackIssuer]:
    async with running_issuer() as running:
        yield running


_made: list[JwtAuthenticator] = []


@pytest_asyncio.fixture(autouse=True)
async def _close_authenticators() -> AsyncIterator[None]:
    yield
    while _made:
        await _made.pop().close()


def _authenticator(issuer: LoopbackIssuer, clock: Any = None, **overrides: Any) -> JwtAuthenticator:
    settings: dict[str, Any] = {"issuer": issuer.url, "jwks_url": issuer.jwks_url, "jwks_min_refresh_seconds": 0}
    settings.update(overrides)
    auth = JwtAuthenticator(JwtConfig.model_validate(settings), frozenset({GATEWAY}), clock=clock or MonotonicClock())
    _made.append(auth)
    return auth


async def _reason(auth: JwtAuthenticator, token: str, endpoint: str | None = None) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(token, endpoint)
    assert caught.value.http_status == 401
    return caught.value.message


async def test_a_valid_token_maps_claims_to_the_identity(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer)
    token = issuer.token(
        sub="agent-7", aud=GATEWAY, scope="tools:call:web/* prompts:get:web/x", team="blue", roles=["r1"]
    )
    identity = await auth.authenticate(token)
    assert identity.subject == "agent-7"
    assert identity.scheme == "jwt"
    assert identity.team == "blue"
    assert identity.roles == frozenset({"r1"})
    assert identity.scopes == frozenset({"tools:call:web/*", "prompts:get:web/x"})
    assert identity.claims["aud"] == GATEWAY
    await auth.close()


async def test_es256_keys_from_the_jwks(issuer: LoopbackIssuer) -> None:
    issuer.rotate("ES256")
    auth = _authenticator(issuer, algorithms=["ES256"])
    assert (await auth.authenticate(issuer.token(sub="ec", aud=GATEWAY))).subject == "ec"
    await auth.close()


async def test_verified_tokens_are_cached_and_rechecked_for_time_and_audience(issuer: LoopbackIssuer) -> None:
    wall = [time.time()]
    auth = JwtAuthenticator(
        JwtConfig(issuer=issuer.url, jwks_url=issuer.jwks_url, leeway_seconds=5),
        frozenset({GATEWAY}),
        clock=MonotonicClock(),
        wall=lambda: wall[0],
    )
    _made.append(auth)
    token = issuer.token(sub="a", aud=GATEWAY, lifetime=60)
    await auth.authenticate(token)
    issuer.keys.clear()  # The key is gone from the JWKS: a cached token needs no key.
    assert (await auth.authenticate(token)).subject == "a"
    wall[0] += 66  # past exp + leeway: the cache does not keep it alive
    assert "expired" in await _reason(auth, token)
    await auth.close()


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"aud": "https://other.example.test/mcp"}, "does not name this gateway"),
        ({"aud": GATEWAY, "iss": "https://evil.example.test"}, "was not issued by"),
        ({"aud": GATEWAY, "exp": int(time.time()) - 3600}, "expired"),
        ({"aud": GATEWAY, "nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": GATEWAY, "exp": None}, "required claim 'exp'"),
        ({"aud": GATEWAY, "sub": None}, "required claim 'sub'"),
        ({"aud": GATEWAY, "sub": ""}, "'sub' claim is not a non-empty string"),
    ],
)
async def test_rejections(issuer: LoopbackIssuer, claims: dict[str, Any], expected: str) -> None:
    auth = _authenticator(issuer)
    token = issuer.token(**{"sub": "agent", **claims})
    assert expected in await _reason(auth, token)
    await auth.close()


async def test_a_token_for_one_endpoint_is_accepted_there_only(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer)
    endpoint = "https://gw.example.test/servers/web/mcp"
    token = issuer.token(sub="a", aud=endpoint)
    assert (await auth.authenticate(token, endpoint)).subject == "a"
    assert "does not name this gateway" in await _reason(auth, token, "https://gw.example.test/servers/db/mcp")
    await auth.close()


async def test_a_bad_signature_is_refused(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer)
    impostor = SigningKey.generate()
    impostor.kid = issuer.keys[-1].kid  # Claims to be the issuer's key.
    assert "signature does not verify" in await _reason(auth, issuer.token(key=impostor, sub="a", aud=GATEWAY))
    head, _body, signature = issuer.token(sub="a", aud=GATEWAY).split(".")
    tampered = jwt.encode({"sub": "root", "iss": issuer.url, "aud": GATEWAY, "exp": 2**31}, "x" * 32, algorithm="HS256")
    forged = f"{head}.{tampered.split('.')[1]}.{signature}"
    assert "signature does not verify" in await _reason(auth, forged)
    await auth.close()


async def test_algorithms_outside_the_list_are_refused(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer)
    unsigned = jwt.encode({"sub": "a", "iss": issuer.url, "aud": GATEWAY, "exp": 2**31}, None, algorithm="none")
    assert "algorithm 'none' is not accepted" in await _reason(auth, unsigned)
    hs = jwt.encode({"sub": "a", "iss": issuer.url, "aud": GATEWAY, "exp": 2**31}, "secret" * 6, algorithm="HS256")
    assert "algorithm 'HS256' is not accepted" in await _reason(auth, hs)
    await auth.close()


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", ""])
async def test_garbled_tokens_are_refused(issuer: LoopbackIssuer, garbage: str) -> None:
    auth = _authenticator(issuer)
    assert await _reason(auth, garbage)
    await auth.close()


async def test_unknown_kid_refetches_the_jwks_once_then_refuses(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer)
    await auth.authenticate(issuer.token(sub="a", aud=GATEWAY))
    assert issuer.jwks_requests == 1
    rotated = issuer.rotate()  # The issuer rotates: the gateway learns the new kid by refetching.
    assert (await auth.authenticate(issuer.token(key=rotated, sub="b", aud=GATEWAY))).subject == "b"
    assert issuer.jwks_requests == 2
    stranger = SigningKey.generate()
    assert "not in the issuer's key set" in await _reason(auth, issuer.token(key=stranger, sub="c", aud=GATEWAY))
    assert issuer.jwks_requests == 3
    await auth.close()


async def test_unknown_kid_refetches_are_rate_limited(issuer: LoopbackIssuer) -> None:
    clock = FakeClock()
    auth = _authenticator(issuer, clock, jwks_min_refresh_seconds=10)
    await auth.authenticate(issuer.token(sub="a", aud=GATEWAY))
    for _ in range(5):  # A flood of made-up kids within the interval costs no fetch.
        await _reason(auth, issuer.token(key=SigningKey.generate(), sub="x", aud=GATEWAY))
    assert issuer.jwks_requests == 1
    clock.t += 10
    rotated = issuer.rotate()
    assert (await auth.authenticate(issuer.token(key=rotated, sub="b", aud=GATEWAY))).subject == "b"
    assert issuer.jwks_requests == 2
    await auth.close()


async def test_the_jwks_is_refetched_when_stale(issuer: LoopbackIssuer) -> None:
    clock = FakeClock()
    auth = _authenticator(issuer, clock, jwks_cache_seconds=60, token_cache_size=0)
    token = issuer.token(sub="a", aud=GATEWAY)
    await auth.authenticate(token)
    await auth.authenticate(token)
    assert issuer.jwks_requests == 1
    clock.t += 61
    await auth.authenticate(token)
    assert issuer.jwks_requests == 2
    await auth.close()


async def test_oidc_discovery_finds_the_jwks(issuer: LoopbackIssuer) -> None:
    auth = _authenticator(issuer, jwks_url=None, discovery=True)
    assert (await auth.authenticate(issuer.token(sub="d", aud=GATEWAY))).subject == "d"
    await auth.close()


async def test_an_unreachable_jwks_refuses_tokens_with_a_reason() -> None:
    async with running_issuer() as gone:
        url, jwks_url, token = gone.url, gone.jwks_url, gone.token(sub="a", aud=GATEWAY)
    auth = JwtAuthenticator(JwtConfig(issuer=url, jwks_url=jwks_url), frozenset({GATEWAY}), clock=MonotonicClock())
    _made.append(auth)
    assert "not in the issuer's key set" in await _reason(auth, token)
    await auth.close()


async def test_hs256_with_a_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_JWT_SECRET", "s3cret-for-tests-only-0123456789-abcdef")
    config = JwtConfig(issuer="https://idp.test", secret_env="TW_TEST_JWT_SECRET", algorithms=["HS256"])
    auth = JwtAuthenticator(config, frozenset({GATEWAY}), clock=MonotonicClock())
    claims = {"sub": "h", "iss": "https://idp.test", "aud": GATEWAY, "exp": int(time.time()) + 60}
    assert (
        await auth.authenticate(jwt.encode(claims, "s3cret-for-tests-only-0123456789-abcdef", "HS256"))
    ).subject == "h"
    assert "signature" in await _reason(auth, jwt.encode(claims, "another-secret-0123456789abcdef-xyz", "HS256"))
    monkeypatch.setenv("TW_TEST_JWT_SECRET", "short")
    with pytest.raises(JwtConfigError, match="at least 32 bytes"):
        JwtAuthenticator(config, frozenset({GATEWAY}), clock=MonotonicClock())
    monkeypatch.delenv("TW_TEST_JWT_SECRET")
    with pytest.raises(JwtConfigError, match="TW_TEST_JWT_SECRET is not set"):
        JwtAuthenticator(config, frozenset({GATEWAY}), clock=MonotonicClock())
