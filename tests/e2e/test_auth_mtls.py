"""mTLS end to end: TLS terminated by the gateway, client certificates from a generated CA
(`trustme`), the identity taken from the certificate, scopes from `auth.mtls.identities`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx2
import orjson
import pytest
import pytest_asyncio
import trustme
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from toolway.app import StartupError
from toolway.testing import RunningGateway, RunningHttpUpstream, http_upstream, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["key"])
    with open(paths["cert"], "wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return paths


def client_context(ca: trustme.CA, cert: trustme.LeafCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    return context


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("web") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def files() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("files") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    pki: dict[str, str], web: RunningHttpUpstream, files: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    auth = {
        "schemes": ["mtls"],
        "mtls": {
            "cert_file": pki["cert"],
            "key_file": pki["key"],
            "ca_file": pki["ca"],
            "identities": {"agent-tls": {"team": "ops", "scopes": ["tools:call:web/*"]}},
        },
    }
    servers = [
        {"name": "web", "transport": "streamable-http", "url": web.url},
        {"name": "files", "transport": "streamable-http", "url": files.url},
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store"), auth=auth) as gw:
        yield gw


async def test_the_client_certificate_names_the_caller(gateway: RunningGateway, ca: trustme.CA) -> None:
    assert gateway.url.startswith("https://")
    cert = ca.issue_cert("agent-tls.example.test", common_name="agent-tls")
    async with httpx2.AsyncClient(verify=client_context(ca, cert), timeout=30) as http_client:
        async with Client(streamable_http_client(gateway.url, http_client=http_client), mode="legacy") as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names and all(name.startswith("web__") for name in names)
            assert (await client.call_tool("web__whoami", {})).content[0].text == "web"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as refused:
                await client.call_tool("files__echo", {"text": "x"})
    assert refused.value.error.data == {"requiredScope": "tools:call:files/echo"}


async def test_a_certificate_without_grants_sees_nothing(gateway: RunningGateway, ca: trustme.CA) -> None:
    cert = ca.issue_cert("someone.example.test", common_name="someone")
    async with httpx2.AsyncClient(verify=client_context(ca, cert), timeout=30) as http_client:
        async with Client(streamable_http_client(gateway.url, http_client=http_client)) as client:
            assert (await client.list_tools()).tools == []


async def test_websockets_carry_the_certificate_too(gateway: RunningGateway, ca: trustme.CA) -> None:
    cert = ca.issue_cert("agent-tls.example.test", common_name="agent-tls")
    ws_url = gateway.url.replace("https://", "wss://")[: -len("/mcp")] + "/ws"
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url, protocols=["mcp"], ssl=client_context(ca, cert)) as ws:
            await ws.send_str(orjson.dumps(init).decode())
            await ws.receive(timeout=10)
            await ws.send_str(orjson.dumps(listing).decode())
            tools = orjson.loads((await ws.receive(timeout=10)).data)["result"]["tools"]
    assert tools and all(tool["name"].startswith("web__") for tool in tools)


@pytest.mark.parametrize("which", ["no certificate", "another CA"])
async def test_the_tls_handshake_refuses_unverifiable_clients(
    gateway: RunningGateway, ca: trustme.CA, which: str
) -> None:
    cert = (
        None
        if which == "no certificate"
        else trustme.CA().issue_cert("agent-tls.example.test", common_name="agent-tls")
    )
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with aiohttp.ClientSession() as http:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with http.post(gateway.url, data=body, headers=headers, ssl=client_context(ca, cert)) as resp:
                await resp.read()


async def test_client_certificates_toward_an_upstream_that_requires_them(
    gateway: RunningGateway, ca: trustme.CA, pki: dict[str, str], tmp_path: Path
) -> None:
    """A second gateway reaches the mTLS one as an upstream, presenting its own certificate."""
    cert = ca.issue_cert("front.example.test", common_name="agent-tls")
    cert_file, key_file = tmp_path / "front.pem", tmp_path / "front.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    secure = {
        "name": "secure",
        "transport": "streamable-http",
        "url": gateway.url,
        "tls": {"cert_file": str(cert_file), "key_file": str(key_file), "ca_file": pki["ca"]},
    }
    async with running_gateway(servers=[secure], store_dir=tmp_path) as front:
        async with Client(front.url) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names and all(name.startswith("secure__web__") for name in names)
            who = await client.call_tool("secure__web__whoami", {})
    assert who.content[0].text == "web"  # type: ignore[union-attr]


async def test_an_unreadable_upstream_certificate_stops_start_up(tmp_path: Path) -> None:
    secure = {
        "name": "secure",
        "transport": "streamable-http",
        "url": "https://127.0.0.1:9/mcp",
        "tls": {"cert_file": str(tmp_path / "missing.pem"), "key_file": str(tmp_path / "missing.key")},
    }
    with pytest.raises(StartupError, match=r"servers\.secure\.tls"):
        async with running_gateway(servers=[secure], store_dir=tmp_path):
            pass
