"""The discovery API (`/v0.1/servers`, in the official MCP Registry API's shape), the admin
OpenAPI document, and per-server compatibility. Real stdio fixture upstreams; SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from toolway.sessions.upstream import State
from toolway.testing import running_gateway, stdio_upstream_command, wait_for_state
from toolway.testing.admin import AdminClient

logging.getLogger().setLevel(logging.WARNING)

OLD_SERVER = Path(__file__).parent / "peers" / "protocol_2024.py"


def stdio(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "stdio", "command": stdio_upstream_command(name), **extra}


async def test_discovery_lists_servers_with_the_gateways_endpoints(store_url: str, tmp_path: Path) -> None:
    servers = [
        stdio("a", description="Server A", version="1.2.0", tags=["x"], owner="team-a"),
        stdio("b"),
        stdio("c", enabled=False),
    ]
    async with (
        running_gateway(servers=servers, store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        agent = gw.url.removesuffix("/mcp")
        status, page = await admin.request("GET", "/v0.1/servers?limit=1", base_url=agent)
        assert status == 200
        assert page["metadata"] == {"count": 1, "nextCursor": "local.toolway/a"}
        [entry] = page["servers"]
        server = entry["server"]
        assert (server["name"], server["description"], server["version"]) == ("local.toolway/a", "Server A", "1.2.0")
        assert server["remotes"][0] == {"type": "streamable-http", "url": f"{agent}/servers/a/mcp"}
        meta = entry["_meta"]["io.toolway/gateway"]
        assert (meta["health"], meta["tags"], meta["owner"], meta["compatibility"]["compatible"]) == (
            "healthy",
            ["x"],
            "team-a",
            True,
        )

        status, rest = await admin.request("GET", "/v0.1/servers?limit=1&cursor=local.toolway%2Fa", base_url=agent)
        assert [e["server"]["name"] for e in rest["servers"]] == ["local.toolway/b"]
        assert "nextCursor" not in rest["metadata"]  # c is disabled: not discoverable

        # An agent follows the remote it discovered, through the gateway.
        async with Client(server["remotes"][0]["url"]) as client:
            assert (await client.call_tool("whoami", {})).content[0].text == "a"  # type: ignore[union-attr]

        # One server: by its URL-encoded full name, or its bare name; on the admin port too,
        # where the remotes still name the agent-facing listener.
        for path in ("/v0.1/servers/local.toolway%2Fb", "/v0.1/servers/b", "/v0.1/servers/b/versions/latest"):
            status, one = await admin.request("GET", path)
            assert status == 200 and one["server"]["remotes"][0]["url"] == f"{agent}/servers/b/mcp", path
        assert (await admin.request("GET", "/v0.1/servers/c", base_url=agent))[0] == 404
        assert (await admin.request("GET", "/v0.1/servers?limit=0", base_url=agent))[0] == 400

        # What a caller may see is a hook (authorization plugs in here).
        gw.gateway.app.discovery.visible = lambda identity, name: name != "b"  # type: ignore[union-attr]
        status, page = await admin.request("GET", "/v0.1/servers", base_url=agent)
        assert [e["server"]["name"] for e in page["servers"]] == ["local.toolway/a"]


async def test_a_server_toolway_cannot_bridge_is_refused_with_its_reason(store_url: str, tmp_path: Path) -> None:
    old = {"name": "old", "transport": "stdio", "command": [sys.executable, str(OLD_SERVER)], "era": "handshake"}
    async with (
        running_gateway(servers=[], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        assert (await admin.request("POST", "/admin/servers", old))[0] == 201
        await wait_for_state(gw.gateway, "old", State.DOWN)
        _, body = await admin.request("GET", "/admin/servers/old")
        compatibility = body["compatibility"]
        assert compatibility["compatible"] is False
        assert "2024-11-05" in compatibility["reason"] and "cannot bridge" in compatibility["reason"]
        async with Client(gw.url) as client:
            with pytest.raises(MCPError, match="cannot bridge"):
                await client.call_tool("old__anything", {})


async def test_the_openapi_document_covers_every_route(store_url: str, tmp_path: Path) -> None:
    async with (
        running_gateway(servers=[stdio("a")], store_dir=tmp_path, store=store_url) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        status, document = await admin.request("GET", "/admin/openapi.json")
        assert status == 200 and document["openapi"] == "3.1.0"
        schemas = document["components"]["schemas"]
        refs = _refs(document)
        assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)

        # Every documented operation is served (never the app's "no such route" 404, never 405) ...
        values = {"name": "a", "version": "latest", "id": "0"}
        documented = set()
        for path, operations in document["paths"].items():
            for method in operations:
                concrete = path.format(**{k: ("a__echo" if "/tools/" in path else v) for k, v in values.items()})
                documented.add((method.upper(), path))
                status, body = await admin.request(method.upper(), concrete, {} if method != "get" else None)
                assert status != 405, (method, path, body)
                if path == "/admin/keys/reload" and gw.gateway.admin_app.keys is None:
                    continue  # served only when API keys are on
                assert not (status == 404 and "not found:" in str(body)), (method, path, body)

        # ... and every route the admin app dispatches is documented.
        from toolway.admin.openapi import DISCOVERY_ROUTES, STATIC_ROUTES
        from toolway.admin.servers import ROUTES

        served = {(r.method, r.path) for r in ROUTES} | {(m, p) for m, p, _, _ in STATIC_ROUTES}
        served |= {("GET", p) for p, _, _ in DISCOVERY_ROUTES}
        assert served == documented
        status, body = await admin.request("GET", "/admin/nothing-here")
        assert status == 404


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
