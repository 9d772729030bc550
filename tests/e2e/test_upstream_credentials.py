"""The gateway's own credentials reach upstreams; the client's never do.

Done when: an upstream never receives the client's `Authorization` header in any test. Here
the client sends `Authorization`, `Cookie` and `X-Tenant`; each fixture upstream (Streamable
HTTP, HTTP+SSE, WebSocket) records every request's headers, and receives only the gateway's
own OAuth2 token, its static secret header, and `X-Tenant` where per-message headers exist.
The token endpoint is a real aiohttp server on 127.0.0.1 that counts its requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from mcp import Client, ClientSession, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from structlog.testing import capture_logs

from toolway.config.policy import OAuth2ClientCredentials, UpstreamCredentials
from toolway.protocol.errors import UpstreamCredentialsFailed
from toolway.testing import running_gateway
from toolway.testing.processes import start_http_upstream
from toolway.testing.recording import header_values, read_recorded
from toolway.upstream.credentials import ClientCredentialsToken, Credentials
from toolway.upstream.http import HttpChannel, UpstreamHttpError, new_client_session

logging.getLogger().setLevel(logging.WARNING)

CLIENT_TOKEN = "client-token-that-must-stay-at-the-gateway"
CLIENT_HEADERS = {"Authorization": f"Bearer {CLIENT_TOKEN}", "Cookie": "sid=client-cookie", "X-Tenant": "acme"}
CLIENT_ID, CLIENT_SECRET = "toolway-gw", "s3cret/with+chars"
API_KEY = "static-key-from-a-file"


@dataclass
class TokenServer:
    """An OAuth2 token endpoint (RFC 6749 §4.4) that checks the client's Basic credentials."""

    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    refuse: bool = False
    lifetime: int = 3600
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({k: str(v) for k, v in form.items()})
        self.entered.set()
        await self.release.wait()
        expected = "Basic " + base64.b64encode(b"toolway-gw:s3cret%2Fwith%2Bchars").decode()
        if self.refuse or request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client", "error_description": "bad secret"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        body = {"access_token": f"tok-{len(self.requests)}", "token_type": "Bearer", "expires_in": self.lifetime}
        return web.json_response(body)


@pytest_asyncio.fixture
async def tokens() -> AsyncIterator[TokenServer]:
    server = TokenServer()
    server.release.set()
    app = web.Application()
    app.router.add_post("/token", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/token"
    try:
        yield server
    finally:
        await runner.cleanup()


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def oauth2(tokens: TokenServer, **extra: Any) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials.model_validate(
        {"token_url": tokens.url, "client_id": CLIENT_ID, "client_secret": {"value": CLIENT_SECRET}, **extra}
    )


async def test_one_fetch_for_concurrent_callers_then_cached_until_shortly_before_expiry(tokens: TokenServer) -> None:
    clock = ManualClock()
    http = new_client_session()
    async with http:
        token = ClientCredentialsToken("web", oauth2(tokens, scope="mcp:tools", audience="web"), lambda: http, clock)
        tokens.release.clear()
        callers = [asyncio.create_task(token.token()) for _ in range(20)]
        async with asyncio.timeout(10):
            await tokens.entered.wait()  # the first fetch is in flight; the other 19 wait on it
        tokens.release.set()
        async with asyncio.timeout(10):
            assert set(await asyncio.gather(*callers)) == {"tok-1"}
        assert len(tokens.requests) == 1
        assert tokens.requests[0] == {"grant_type": "client_credentials", "scope": "mcp:tools", "audience": "web"}
        clock.t += 3600 - 30 - 1  # expires_in 3600, refreshed 30 s early
        assert await token.token() == "tok-1"
        clock.t += 2
        assert await token.token() == "tok-2"
        assert len(tokens.requests) == 2


async def test_a_refused_fetch_is_a_clear_error_held_for_a_second(tokens: TokenServer) -> None:
    clock = ManualClock()
    http = new_client_session()
    async with http:
        token = ClientCredentialsToken("web", oauth2(tokens), lambda: http, clock)
        tokens.refuse = True
        with capture_logs() as logs, pytest.raises(UpstreamCredentialsFailed) as caught:
            await token.token()
        assert caught.value.message == (
            f"server 'web': cannot get an access token from {tokens.url}: HTTP 401 invalid_client: bad secret"
        )
        assert CLIENT_SECRET not in json.dumps(logs, default=str)
        with pytest.raises(UpstreamCredentialsFailed):
            await token.token()
        assert len(tokens.requests) == 1  # held: no second request within the second
        tokens.refuse = False
        clock.t += 1.5
        assert await token.token() == "tok-2"


async def test_client_secret_post_and_a_missing_endpoint(tokens: TokenServer) -> None:
    http = new_client_session()
    async with http:
        post = ClientCredentialsToken(
            "web", oauth2(tokens, auth_method="client_secret_post"), lambda: http, ManualClock()
        )
        with pytest.raises(UpstreamCredentialsFailed, match="HTTP 401 invalid_client"):
            await post.token()  # this server wants Basic; the form still carried the id and secret
        assert tokens.requests[0]["client_id"] == CLIENT_ID
        gone = oauth2(tokens).model_copy(update={"token_url": "http://127.0.0.1:9/token"})
        dead = ClientCredentialsToken("web", gone, lambda: http, ManualClock())
        with pytest.raises(
            UpstreamCredentialsFailed, match=r"cannot get an access token from http://127\.0\.0\.1:9/token: "
        ):
            await dead.token()


TRANSPORTS = {"plain": ("streamable-http", "streamable-http"), "old": ("sse", "sse"), "sock": ("ws", "websocket")}


async def test_upstreams_get_the_gateways_credentials_and_never_the_clients(
    tokens: TokenServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    credentials = {
        "headers": {"X-Api-Key": {"value_file": str(key_file)}},
        "oauth2": {"token_url": tokens.url, "client_id": CLIENT_ID, "client_secret": {"value": CLIENT_SECRET}},
    }
    started = {}
    try:
        for name, (transport, _) in TRANSPORTS.items():
            started[name] = await start_http_upstream(
                name, transport=transport, record_headers=str(tmp_path / f"{name}.jsonl")
            )
        servers = [
            {
                "name": name,
                "transport": TRANSPORTS[name][1],
                "url": upstream.url,
                "credentials": credentials,
                "forward_headers": ["X-Tenant"],
            }
            for name, upstream in started.items()
        ]
        with capture_logs() as logs:
            async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
                for mode in ("legacy", "2026-07-28"):
                    http = create_mcp_http_client(headers=CLIENT_HEADERS)
                    async with http, Client(streamable_http_client(gw.url, http_client=http), mode=mode) as client:
                        for name in TRANSPORTS:
                            result = await client.call_tool(f"{name}__echo", {"text": mode})
                            assert result.content[0].text == mode  # type: ignore[union-attr]
                # The 2024-11-05 SSE ingress too: its GET and POSTs carry the client's headers.
                sse_url = gw.url.removesuffix("/mcp") + "/sse"
                async with (
                    sse_client(sse_url, headers=CLIENT_HEADERS) as (read, write),
                    ClientSession(read, write) as s,
                ):
                    await s.initialize()
                    for name in TRANSPORTS:
                        assert (await s.call_tool(f"{name}__echo", {"text": "sse"})).content[0].text == "sse"  # type: ignore[union-attr]
    finally:
        for upstream in started.values():
            await upstream.stop()

    assert len(tokens.requests) == 3  # one token per server, fetched once each, however many calls
    for name in TRANSPORTS:
        received = read_recorded(tmp_path / f"{name}.jsonl")
        assert received, name
        authorizations = header_values(received, "Authorization")
        # Every request the upstream saw carried the gateway's token, and only that.
        assert len(authorizations) == len(received), name
        assert all(a.startswith("Bearer tok-") for a in authorizations), (name, authorizations)
        assert CLIENT_TOKEN not in json.dumps(received)
        assert header_values(received, "Cookie") == []
        assert header_values(received, "X-Api-Key") == [API_KEY] * len(received)
        tenants = header_values(received, "X-Tenant")
        if name == "sock":
            assert tenants == []  # WebSocket frames carry no per-message headers
        else:
            assert "acme" in tenants  # forward_headers lists it: passed through on the per-call POSTs
    assert API_KEY not in json.dumps(logs, default=str) and CLIENT_SECRET not in json.dumps(logs, default=str)


async def test_a_token_endpoint_that_refuses_makes_the_server_unavailable_with_the_cause(
    tokens: TokenServer, tmp_path: Path
) -> None:
    tokens.refuse = True
    recorded = tmp_path / "web.jsonl"
    credentials = {"oauth2": {"token_url": tokens.url, "client_id": CLIENT_ID, "client_secret": {"value": "wrong"}}}
    upstream = await start_http_upstream("web", record_headers=str(recorded))
    try:
        server = {"name": "web", "transport": "streamable-http", "url": upstream.url, "credentials": credentials}
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, Client(gw.url) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("web__echo", {"text": "x"})
            assert caught.value.error.code == -32000
            assert f"cannot get an access token from {tokens.url}: HTTP 401 invalid_client: bad secret" in (
                caught.value.error.message
            )
    finally:
        await upstream.stop()
    assert read_recorded(recorded) == []  # nothing reached the upstream without its credentials


async def test_an_upstream_that_answers_401_gets_a_fresh_token_next_time(tokens: TokenServer) -> None:
    """A token the server no longer accepts (revoked, rotated) is dropped at its 401, not kept until expiry."""

    async def mcp(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok-2":
            return web.Response(status=401, text="invalid token", headers={"WWW-Authenticate": "Bearer"})
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {}})

    app = web.Application()
    app.router.add_post("/mcp", mcp)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
    http = new_client_session()
    try:
        async with http:
            creds = Credentials("web", UpstreamCredentials(oauth2=oauth2(tokens)), lambda: http, ManualClock())
            channel = HttpChannel(url, {}, http, auth=creds)
            ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            with pytest.raises(UpstreamHttpError, match="HTTP 401"):
                await channel.roundtrip(ping, {})
            assert await channel.roundtrip(ping, {}) == {"jsonrpc": "2.0", "id": 1, "result": {}}
            assert len(tokens.requests) == 2
    finally:
        await runner.cleanup()
