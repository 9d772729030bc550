"""The discovery API: `GET /v0.1/servers` and `GET /v0.1/servers/<name>` for agents and tooling.

Shaped like the official MCP Registry API (v0.1): each entry is `{"server": <server.json>,
"_meta": {...}}`, lists carry `metadata: {count, nextCursor}` and page with an opaque
`cursor` and a `limit`. Each server.json names the gateway's own endpoints for that
server (`remotes`: Streamable HTTP at `/servers/<name>/mcp`, HTTP+SSE at
`/servers/<name>/sse`), never the upstream's address: agents reach servers through
Toolway. Toolway's own facts (health, compatibility, tools) are under the `_meta` key
`io.toolway/gateway`.

What an agent sees is decided by `visible(identity, server)` (default: everything): the
composition root plugs in the kill switches and, with authentication, the caller's team and
scopes. The admin port shows operators every enabled server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from toolway.auth.identity import Identity
from toolway.ingress.asgi import respond_json
from toolway.registry.service import Registry

Visible = Callable[[Identity | None, str], bool]
SERVER_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
META_KEY = "io.toolway/gateway"
DEFAULT_LIMIT, MAX_LIMIT = 30, 100
PREFIX = "/v0.1/servers"


def everything(identity: Identity | None, server: str) -> bool:
    return True


class Discovery:
    """Serves the discovery paths as raw ASGI, on the agent port and on the admin port."""

    def __init__(self, registry: Registry, namespace: str, base_url: Callable[[dict[str, Any], bool], str]) -> None:
        self._registry = registry
        self._namespace = namespace
        self._base_url = base_url
        self.visible: Visible = everything

    def handles(self, path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def __call__(
        self, scope: dict[str, Any], receive: Any, send: Any, identity: Identity | None = None, *, agent: bool = False
    ) -> None:
        """Answer one discovery request; `agent`: it came to the agent-facing port."""
        if scope.get("method", "GET") != "GET":
            await respond_json(send, 405, {"error": "the discovery API is read-only: use GET"}, [(b"allow", b"GET")])
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        rest = raw.decode("latin-1").split("?", 1)[0][len(PREFIX) :].strip("/")
        base = self._base_url(scope, agent)
        if not rest:
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
            status, body = self.page(base, query, identity, agent=agent)
            await respond_json(send, status, body)
            return
        parts = [unquote(part) for part in rest.split("/")]
        # `<namespace>/<server>` arrives URL-encoded as one segment, or as two; a bare name works too.
        if len(parts) >= 2 and parts[0] == self._namespace:
            parts = [f"{parts[0]}/{parts[1]}", *parts[2:]]
        name, extra = parts[0], parts[1:]
        server = name.removeprefix(self._namespace + "/")
        if (
            server not in self._registry.entries
            or not self._shown(server, identity, agent)
            or extra[:1] not in ([], ["versions"])
        ):
            await respond_json(send, 404, {"error": f"no server {name!r} here"})
            return
        entry = self.entry(server, base)
        if not extra:
            await respond_json(send, 200, entry)
        elif len(extra) == 1:
            await respond_json(send, 200, {"servers": [entry], "metadata": {"count": 1}})
        elif len(extra) == 2 and extra[1] in ("latest", entry["server"]["version"]):
            await respond_json(send, 200, entry)
        else:
            await respond_json(send, 404, {"error": f"server {name!r} has no version {extra[1]!r} here"})

    def page(
        self, base: str, query: dict[str, str], identity: Identity | None, *, agent: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """One page of servers after `cursor`, sorted by name."""
        try:
            limit = int(query.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            limit = 0
        if not 0 < limit <= MAX_LIMIT:
            return 400, {"error": f"limit must be an integer from 1 to {MAX_LIMIT}", "field": "limit"}
        cursor = query.get("cursor") or ""
        search = (query.get("search") or "").lower()
        after = cursor.removeprefix(self._namespace + "/")
        names = [
            n for n in self._registry.names() if n > after and search in n.lower() and self._shown(n, identity, agent)
        ]
        chosen = names[:limit]
        metadata: dict[str, Any] = {"count": len(chosen)}
        if len(names) > limit:
            metadata["nextCursor"] = f"{self._namespace}/{chosen[-1]}"
        return 200, {"servers": [self.entry(n, base) for n in chosen], "metadata": metadata}

    def _shown(self, server: str, identity: Identity | None, agent: bool) -> bool:
        # Operators (the admin port) see every enabled server; agents what `visible` lets them use.
        registration = self._registry.entries.get(server)
        return registration is not None and registration.enabled and (not agent or self.visible(identity, server))

    def entry(self, server: str, base: str) -> dict[str, Any]:
        """One server as `{"server": server.json, "_meta": {...}}`."""
        config = self._registry.config_of(server)
        view = self._registry.describe(server)
        info = view["server_info"] or {}
        version = (config.version if config is not None else None) or info.get("version") or "0.0.0"
        description = (config.description if config is not None else None) or info.get("title") or info.get("name")
        document: dict[str, Any] = {
            "$schema": SERVER_SCHEMA,
            "name": f"{self._namespace}/{server}",
            "description": description or f"{server}, through the Toolway gateway",
            "version": version,
            "remotes": [
                {"type": "streamable-http", "url": f"{base}/servers/{server}/mcp"},
                {"type": "sse", "url": f"{base}/servers/{server}/sse"},
            ],
        }
        if isinstance(info.get("title"), str):
            document["title"] = info["title"]
        health = view["health"] or {}
        meta = {
            "server": server,
            "status": "active",
            "listed": view["listed"],
            "health": health.get("state"),
            "compatibility": view["compatibility"],
            "upstream": {"name": info.get("name"), "version": info.get("version")},
            "protocolVersion": view["protocol_version"],
            "tags": list(config.tags) if config is not None else [],
            "owner": config.owner if config is not None else None,
            "tools": view["tools"],
        }
        return {"server": document, "_meta": {META_KEY: meta}}
