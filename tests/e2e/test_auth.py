"""Authentication and scopes end to end: a real issuer with a JWKS on loopback, two fixture
upstreams (`web` and `files`), the official `mcp` client with a bearer token, raw HTTP for
the wire details (RFC 6750 challenges, RFC 9728 metadata), and `toolway keys` for API keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import orjson
import pytest
import pytest_asyncio
import yaml
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

from toolway.app import StartupError
from toolway.cli.main import app as cli
from toolway.lifetime import running
from toolway.testing import RunningGateway, RunningHttpUpstream, gateway_config, http_upstream, running_gateway
from toolway.testing.issuer import LoopbackIssuer, SigningKey, running_issuer

pytestmark = pytest.mark.asyncio(loop_scope="module")

CANONICAL = "https://gw.example.test/mcp"
METADATA = "https://gw.example.test/.well-known/oauth-protected-resource/mcp"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
V = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "auth-test", "version": "0"},
}
_PARAM = re.compile(r'([a-z_]+)="([^"\\]*)"')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def issuer() -> AsyncIterator[LoopbackIssuer]:
    async with running_issuer() as running_:
        yield running_


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("web") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def files() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("files", era="handshake") as upstream:
        yield upstream


def auth_section(issuer: LoopbackIssuer) -> dict[str, Any]:
    return {
        "schemes": ["api_key", "jwt"],
        "jwt": {"issuer": issuer.url, "jwks_url": issuer.jwks_url},
        "oauth": {"resource": CANONICAL, "scopes_supported": ["tools:call:*", "prompts:get:*", "resources:read:*"]},
        "teams": {"blue": {"servers": ["web"]}, "ops": {"servers": ["*"]}},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    issuer: LoopbackIssuer,
    web: RunningHttpUpstream,
    files: RunningHttpUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningGateway]:
    servers = [
        {"name": "web", "transport": "streamable-http", "url": web.url},
        {"name": "files", "transport": "streamable-http", "url": files.url},
    ]
    store_dir = tmp_path_factory.mktemp("store")
    async with running_gateway(
        servers=servers, store_dir=store_dir, auth=auth_section(issuer), limits={"page_size": 5}
    ) as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def token(issuer: LoopbackIssuer, subject: str = "agent-web", **claims: Any) -> str:
    claims.setdefault("aud", CANONICAL)
    claims.setdefault("team", "ops")
    return issuer.token(sub=subject, **claims)


@contextlib.asynccontextmanager
async def bearer_client(url: str, credential: str, mode: str = "auto") -> AsyncIterator[Client]:
    """The official client, sending `Authorization: Bearer <credential>` on every request."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {credential}"}, timeout=30) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client), mode=mode) as client:
            yield client


async def all_tools(client: Client) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return names


def challenge(headers: Any) -> dict[str, str]:
    value = headers["WWW-Authenticate"]
    assert value.startswith("Bearer ")
    return dict(_PARAM.findall(value))


async def post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    async with http.post(url, data=orjson.dumps(body), headers={**JSON_HEADERS, **headers}) as resp:
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None), resp.headers


def initialize(msg_id: int = 1) -> dict[str, Any]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params}


# --- Done when (1): tools:call:web/* sees and calls only web tools -------------------------------


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_web_scoped_agent_sees_and_calls_only_web_tools(
    gateway: RunningGateway, issuer: LoopbackIssuer, mode: str
) -> None:
    async with bearer_client(gateway.url, token(issuer, scope="tools:call:web/*"), mode) as client:
        names = await all_tools(client)  # pages of 5: pagination over what the agent may see
        assert names and all(name.startswith("web__") for name in names)
        assert "web__echo" in names and "files__echo" not in names
        echoed = await client.call_tool("web__echo", {"text": "hi"})
        assert echoed.content[0].text == "hi"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as refused:
            await client.call_tool("files__echo", {"text": "hi"})
    assert refused.value.error.code == -32003
    assert "tools:call:files/echo" in refused.value.error.message
    assert refused.value.error.data == {"requiredScope": "tools:call:files/echo"}


async def test_an_unscoped_agent_sees_nothing_and_a_full_one_everything(
    gateway: RunningGateway, issuer: LoopbackIssuer
) -> None:
    async with bearer_client(gateway.url, token(issuer, "nobody", scope="")) as client:
        assert await all_tools(client) == []
        assert (await client.list_prompts()).prompts == []
    async with bearer_client(gateway.url, token(issuer, "admin", scope="*")) as client:
        names = await all_tools(client)
    assert {name.split("__")[0] for name in names} == {"web", "files"}


async def test_the_single_server_endpoint_follows_the_same_rules(
    gateway: RunningGateway, issuer: LoopbackIssuer
) -> None:
    credential = token(issuer, scope="tools:call:web/*")
    async with bearer_client(gateway.server_url("files"), credential) as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo", {"text": "x"})
        assert refused.value.error.data == {"requiredScope": "tools:call:files/echo"}
    async with bearer_client(gateway.server_url("web"), credential) as client:
        assert "echo" in [tool.name for tool in (await client.list_tools()).tools]
        assert (await client.call_tool("whoami", {})).content[0].text == "web"  # type: ignore[union-attr]


async def test_team_boundaries_hide_whole_servers(gateway: RunningGateway, issuer: LoopbackIssuer) -> None:
    async with bearer_client(gateway.url, token(issuer, "blue-agent", scope="*", team="blue")) as client:
        assert {name.split("__")[0] for name in await all_tools(client)} == {"web"}
        with pytest.raises(MCPError) as refused:
            await client.call_tool("files__echo", {"text": "x"})
    assert "outside the boundary of team 'blue'" in refused.value.error.message
    async with bearer_client(gateway.url, token(issuer, "stray", scope="*", team="red")) as client:
        assert await all_tools(client) == []


async def test_discovery_lists_only_the_servers_a_caller_may_use(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    base = gateway.url.removesuffix("/mcp")

    async def names(credential: str | None) -> tuple[int, list[str]]:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        async with http.get(f"{base}/v0.1/servers", headers=headers) as response:
            body = await response.json()
            return response.status, [entry["server"]["name"].split("/")[-1] for entry in body.get("servers", [])]

    assert await names(token(issuer, scope="tools:call:web/*")) == (200, ["web"])
    assert await names(token(issuer, scope="*")) == (200, ["files", "web"])
    assert await names(token(issuer, "blue-agent", scope="*", team="blue")) == (200, ["web"])
    assert await names(token(issuer, "nobody", scope="")) == (200, [])
    status, _ = await names(None)  # discovery is behind authentication like every agent path
    assert status == 401
    async with http.get(
        f"{base}/v0.1/servers/files", headers={"Authorization": f"Bearer {token(issuer, scope='tools:call:web/*')}"}
    ) as one:
        assert one.status == 404  # a server the caller may not use does not exist for it
    assert gateway.admin_url is not None
    async with http.get(f"{gateway.admin_url}/v0.1/servers") as admin:  # operators see everything
        assert [e["server"]["name"].split("/")[-1] for e in (await admin.json())["servers"]] == ["files", "web"]


async def test_a_stateless_era_denial_is_403_with_a_step_up_challenge(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "files__echo", "arguments": {"text": "x"}, "_meta": ENVELOPE},
    }
    headers = {
        "Authorization": f"Bearer {token(issuer, scope='tools:call:web/*')}",
        "MCP-Protocol-Version": V,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "files__echo",
    }
    status, answer, response_headers = await post(http, gateway.url, body, headers)
    assert status == 403
    assert answer["error"]["data"] == {"requiredScope": "tools:call:files/echo"}
    params = challenge(response_headers)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "tools:call:files/echo"
    assert params["resource_metadata"] == METADATA


# --- Done when (2): another audience is refused with 401 and the metadata's URL ----------------


async def test_a_token_for_another_audience_gets_401_naming_the_metadata(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    other = token(issuer, scope="*", aud="https://another-service.example.test/mcp")
    status, body, headers = await post(http, gateway.url, initialize(), {"Authorization": f"Bearer {other}"})
    assert status == 401
    params = challenge(headers)
    assert params["resource_metadata"] == METADATA
    assert params["error"] == "invalid_token"
    assert "audience" in params["error_description"]
    assert body == {"error": "invalid_token", "error_description": body["error_description"]}
    async with http.get(params["resource_metadata"].replace("https://gw.example.test", gateway.url[:-4])) as resp:
        assert resp.status == 200
        assert (await resp.json())["resource"] == CANONICAL


def _rejections(issuer: LoopbackIssuer) -> dict[str, tuple[dict[str, str], str | None, str]]:
    stranger = SigningKey.generate()
    impostor = SigningKey.generate()
    impostor.kid = issuer.keys[-1].kid
    bearer = "Bearer "
    return {
        "no credentials": ({}, None, "authentication required"),
        "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_request", "Bearer <token>"),
        "garbled": ({"Authorization": bearer + "not.a.jwt"}, "invalid_token", "well-formed"),
        "expired": ({"Authorization": bearer + token(issuer, lifetime=-3600)}, "invalid_token", "expired"),
        "not yet valid": ({"Authorization": bearer + token(issuer, nbf=2**31)}, "invalid_token", "not valid yet"),
        "wrong issuer": ({"Authorization": bearer + token(issuer, iss="https://evil.test")}, "invalid_token", "issued"),
        "unknown kid": (
            {"Authorization": bearer + issuer.token(key=stranger, sub="x", aud=CANONICAL)},
            "invalid_token",
            "kid",
        ),
        "bad signature": (
            {"Authorization": bearer + issuer.token(key=impostor, sub="x", aud=CANONICAL)},
            "invalid_token",
            "signature",
        ),
        "unknown api key": ({"X-API-Key": "twk_000000000000_nope"}, "invalid_token", "unknown or revoked"),
    }


async def test_every_rejection_is_a_401_with_an_rfc6750_challenge(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    for case, (headers, error, reason) in _rejections(issuer).items():
        status, body, response_headers = await post(http, gateway.url, initialize(), headers)
        assert status == 401, case
        params = challenge(response_headers)
        assert params["resource_metadata"] == METADATA, case
        assert params.get("error") == error, case  # RFC 6750 §3.1: no error code without credentials
        assert reason in body["error_description"], case
        assert response_headers["Cache-Control"] == "no-store"


async def test_other_transports_authenticate_too(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    base = gateway.url[: -len("/mcp")]
    async with http.get(f"{base}/sse") as resp:
        assert resp.status == 401 and challenge(resp.headers)["resource_metadata"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with http.ws_connect(f"{base}/ws", protocols=["mcp"]):
            pass
    assert refused.value.status == 401
    headers = {"Authorization": f"Bearer {token(issuer, scope='tools:call:web/*')}"}
    async with http.ws_connect(f"{base}/ws", protocols=["mcp"], headers=headers) as ws:
        await ws.send_str(orjson.dumps(initialize()).decode())
        answer = orjson.loads((await ws.receive(timeout=10)).data)
        assert answer["result"]["serverInfo"]["name"] == "toolway"


async def test_protected_resource_metadata(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    base = gateway.url[: -len("/mcp")]
    for path, resource in [
        ("/.well-known/oauth-protected-resource/mcp", CANONICAL),
        ("/.well-known/oauth-protected-resource", "https://gw.example.test"),
        ("/.well-known/oauth-protected-resource/servers/web/mcp", "https://gw.example.test/servers/web/mcp"),
    ]:
        async with http.get(base + path) as resp:
            assert resp.status == 200, path
            doc = await resp.json()
        assert doc["resource"] == resource
        assert doc["authorization_servers"] == [issuer.url]
        assert doc["bearer_methods_supported"] == ["header"]
    async with http.get(base + "/.well-known/oauth-protected-resource/servers/nope/mcp") as resp:
        assert resp.status == 404


# --- Session safety --------------------------------------------------------------------------------


async def test_a_session_id_is_bound_to_the_principal_that_opened_it(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    alice = {"Authorization": f"Bearer {token(issuer, 'alice', scope='*')}"}
    mallory = {"Authorization": f"Bearer {token(issuer, 'mallory', scope='*')}"}
    status, _, headers = await post(http, gateway.url, initialize(), alice)
    assert status == 200
    session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    status, answer, _ = await post(http, gateway.url, listing, {**mallory, **session})
    assert status == 404  # as if the session did not exist
    assert answer["error"]["message"] == "Session not found"
    async with http.get(gateway.url, headers={**mallory, **session, "Accept": "text/event-stream"}) as resp:
        assert resp.status == 404
    async with http.delete(gateway.url, headers={**mallory, **session}) as resp:
        assert resp.status == 404
    # A session id alone authenticates nobody.
    status, _, _ = await post(http, gateway.url, listing, session)
    assert status == 401
    status, answer, _ = await post(http, gateway.url, listing, {**alice, **session})
    assert status == 200 and answer["result"]["tools"]


# --- API keys, from the CLI to the gateway and back ----------------------------------------------


async def test_api_keys_created_used_and_revoked_through_the_cli(
    gateway: RunningGateway, issuer: LoopbackIssuer, tmp_path: Path
) -> None:
    config = tmp_path / "toolway.yaml"
    config.write_text(yaml.safe_dump({"store": gateway.config.store, "auth": auth_section(issuer)}))
    runner = CliRunner()

    def keys(*args: str) -> Any:
        return runner.invoke(cli, ["keys", *args, "--config", str(config)], catch_exceptions=False)

    created = await asyncio.to_thread(
        keys, "create", "--subject", "ci-bot", "--team", "ops", "--scope", "tools:call:files/*",
        "--admin-url", str(gateway.admin_url), "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    record = orjson.loads(created.stdout)
    key = record["key"]
    async with bearer_client(gateway.url, key) as client:
        names = await all_tools(client)
        assert names and all(name.startswith("files__") for name in names)
        assert (await client.call_tool("files__whoami", {})).content[0].text == "files"  # type: ignore[union-attr]
    listed = await asyncio.to_thread(keys, "list", "--json")
    assert [entry["id"] for entry in orjson.loads(listed.stdout)] == [record["id"]]
    assert key not in listed.stdout
    revoked = await asyncio.to_thread(keys, "revoke", record["id"], "--admin-url", str(gateway.admin_url))
    assert revoked.exit_code == 0, revoked.output
    assert "reloaded its keys" in revoked.stderr
    async with aiohttp.ClientSession() as http:
        status, body, _headers = await post(http, gateway.url, initialize(), {"X-API-Key": key})
    assert status == 401 and "revoked" in body["error_description"]
    again = await asyncio.to_thread(keys, "revoke", record["id"])
    assert again.exit_code == 3


async def test_calls_are_audited_under_the_callers_name(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    async with bearer_client(gateway.url, token(issuer, "audited-agent", scope="tools:call:web/*")) as client:
        await client.call_tool("web__echo", {"text": "a"})
        with pytest.raises(MCPError):
            await client.call_tool("files__echo", {"text": "b"})
    async with http.get(f"{gateway.admin_url}/admin/audit", params={"principal": "audited-agent"}) as resp:
        rows = (await resp.json())["records"]
    outcomes = {(row["target"], row["outcome"], row["error_code"]) for row in rows}
    assert ("web__echo", "ok", None) in outcomes
    assert ("files__echo", "error", -32003) in outcomes


# --- Start-up ------------------------------------------------------------------------------------


async def test_a_public_address_without_authentication_is_refused(tmp_path: Path) -> None:
    config = gateway_config([], tmp_path, listen={"host": "0.0.0.0", "port": 0})
    with pytest.raises(StartupError, match="auth: none"):
        async with running(config):
            pass


async def test_stdio_serves_the_local_operator_with_the_configured_identity(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    data = {
        "store": f"sqlite:///{tmp_path / 'stdio.db'}",
        "admin": {"enabled": False},
        "servers": [s.model_dump(mode="json") for s in gateway.config.servers],
        "auth": {"schemes": ["api_key"], "stdio": {"subject": "operator", "scopes": ["tools:call:web/*"]}},
    }
    config = tmp_path / "stdio.yaml"
    config.write_text(yaml.safe_dump(data))
    toolway = str(Path(sys.executable).parent / "toolway")
    params = StdioServerParameters(command=toolway, args=["stdio", "--config", str(config)])
    async with asyncio.timeout(60), Client(params, mode="legacy") as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names and all(name.startswith("web__") for name in names)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("files__echo", {"text": "x"})
    assert refused.value.error.data == {"requiredScope": "tools:call:files/echo"}


async def test_a_legacy_sse_connection_answers_only_its_own_principal(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    base = gateway.url[: -len("/mcp")]
    alice = {"Authorization": f"Bearer {token(issuer, 'alice', scope='*')}"}
    mallory = {"Authorization": f"Bearer {token(issuer, 'mallory', scope='*')}"}
    async with http.get(f"{base}/sse", headers=alice) as stream:
        assert stream.status == 200
        endpoint = ""
        async for line in stream.content:
            if line.startswith(b"data: "):
                endpoint = line[len(b"data: ") :].decode().strip()
                break
        message = orjson.dumps(initialize())
        async with http.post(base + endpoint, data=message, headers={**mallory, **JSON_HEADERS}) as resp:
            assert resp.status == 404  # another principal: as if the connection did not exist
        async with http.post(base + endpoint, data=message, headers=JSON_HEADERS) as resp:
            assert resp.status == 401  # the connection id alone authenticates nobody
        async with http.post(base + endpoint, data=message, headers={**alice, **JSON_HEADERS}) as resp:
            assert resp.status == 202


async def test_resources_follow_resources_read_scopes(gateway: RunningGateway, issuer: LoopbackIssuer) -> None:
    async with bearer_client(gateway.url, token(issuer, "reader", scope="resources:read:files")) as client:
        uris = {str(resource.uri) for resource in (await client.list_resources()).resources}
        assert uris == {"ui://files/page", "file:///files/readme.txt"}
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["mem://files/{key}"]
        readme = await client.read_resource("file:///files/readme.txt")
        assert readme.contents
        with pytest.raises(MCPError) as refused:
            await client.read_resource("file:///web/readme.txt")
    assert refused.value.error.data == {"requiredScope": "resources:read:web"}
