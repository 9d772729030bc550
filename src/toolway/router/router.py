"""The router: the terminal stage. Resolves names to servers and calls them.

On `/mcp` it serves the merged catalog and routes `<server>__<name>` and resource
URIs to their owners. On `/servers/<name>/mcp` it passes every request to that
one server with names unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from toolway.observability.events import Events, UpstreamCallFinished
from toolway.observability.tracing import upstream_span
from toolway.pipeline.context import Call
from toolway.protocol.errors import InvalidParams, MethodNotFound, UnknownTarget, UpstreamUnavailable, to_error
from toolway.registry.catalog import LISTS, ServerCatalog, param_headers
from toolway.router.affinity import Affinity
from toolway.router.cursors import CursorCodec
from toolway.router.dispatch import Dispatcher
from toolway.router.names import split
from toolway.router.traffic import Traffic
from toolway.router.view import View, build_view
from toolway.sessions.hub import Hub
from toolway.sessions.manager import ConnectionManager
from toolway.sessions.pool import ServerPool
from toolway.sessions.upstream import State
from toolway.upstream.credentials import forwarded

Route = Callable[[Call], Awaitable[dict[str, Any]]]
# The items of a merged list that the call's identity may see (set when authentication is on).
Visible = Callable[[Call, View], list[dict[str, Any]]]
_ITEMS_KEY = {method: key for method, (_, key) in LISTS.items()}
# Methods the 2026-07-28 revision removed: a stateless-era client gets -32601 for them.
_REMOVED_IN_2026 = frozenset({"ping", "resources/subscribe", "resources/unsubscribe", "logging/setLevel"})
_LOCAL = frozenset({"ping", "initialize", "server/discover", "resources/subscribe", "resources/unsubscribe"})


class Listing(Protocol):
    """What the registry decides per server and tool (health, pins); answered from memory."""

    def listed(self, conn: ServerPool) -> bool: ...

    def tool_hidden(self, server: str, tool: str) -> bool: ...

    def catalog_of(self, conn: ServerPool) -> ServerCatalog: ...

    def check_tool(self, server: str, tool: str) -> None:
        """Raises a `ToolwayError` (e.g. `ToolQuarantined`) when the tool must not be called."""
        ...


class Router:
    registry: Listing | None = None  # set by the composition root; None: every connected server, every tool

    def __init__(
        self,
        manager: ConnectionManager,
        hub: Hub,
        *,
        page_size: int,
        cursors: CursorCodec,
        events: Events | None = None,
        visible: Visible | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._manager = manager
        self._visible = visible
        self._events = events
        # Picks the replica, retries where safe, applies kill switches and affinity (dispatch.py).
        self.dispatcher = dispatcher or Dispatcher(Traffic(events), Affinity(10_000), events=events)
        self._hub = hub
        self._page_size = page_size
        self._cursors = cursors
        self._view = View(generation=-1)
        self._routes: dict[str, Route] = {
            "ping": self._ping,
            "tools/call": self._tools_call,
            "prompts/get": self._prompts_get,
            "resources/read": self._by_uri,
            "resources/subscribe": self._subscription,
            "resources/unsubscribe": self._subscription,
            "completion/complete": self._complete,
            **{method: self._list for method in LISTS},
        }

    async def __call__(self, call: Call) -> dict[str, Any]:
        if call.era == "modern" and call.method in _REMOVED_IN_2026:
            raise MethodNotFound(f"Method not found: {call.method} (removed in 2026-07-28)")
        if call.scope is not None and call.method not in _LOCAL:
            return await self._passthrough(call)
        route = self._routes.get(call.method)
        if route is None:
            raise MethodNotFound(f"Method not found: {call.method}")
        return await route(call)

    def view(self) -> View:
        """The merged catalog, rebuilt only when a server's state or catalog changed (or a kill switch:
        what an agent cannot call, it does not see; `Traffic.on_listing` bumps the generation)."""
        generation = self._manager.generation
        if self._view.generation != generation:
            registry = self.registry
            traffic = self.dispatcher.traffic
            killed = frozenset(traffic.killed_servers)
            if registry is None:
                self._view = build_view(generation, self._manager.ready(), traffic.tool_hidden, hidden_servers=killed)
            else:
                listed = [c for c in self._manager.connections.values() if registry.listed(c)]
                quarantined = registry.tool_hidden

                def hidden(server: str, tool: str) -> bool:
                    return quarantined(server, tool) or traffic.tool_hidden(server, tool)

                self._view = build_view(generation, listed, hidden, registry.catalog_of, hidden_servers=killed)
        return self._view

    def resource_owner(self, uri: str) -> str | None:
        """The server a resource request for `uri` goes to on `/mcp` (as `_by_uri` routes it)."""
        return self.view().owner_of(uri) or self._sole_resource_server()

    async def _ping(self, call: Call) -> dict[str, Any]:
        return {}

    async def _list(self, call: Call) -> dict[str, Any]:
        view = self.view()
        # Filtered before slicing, so pages and cursors are those of what the caller may see.
        visible = self._visible
        items = visible(call, view) if visible is not None and call.identity is not None else view.lists[call.method]
        cursor = (call.params or {}).get("cursor")
        start = self._cursors.offset(call.method, cursor) if cursor is not None else 0
        end = start + self._page_size
        result: dict[str, Any] = {_ITEMS_KEY[call.method]: items[start:end]}
        if end < len(items):
            result["nextCursor"] = self._cursors.mint(call.method, end)
        if call.era == "modern":
            result["ttlMs"] = view.ttl_ms
            result["cacheScope"] = "private" if view.private else "public"
        return result

    async def _tools_call(self, call: Call) -> dict[str, Any]:
        conn, name = await self._resolve(call, "tools/list", "tool")
        if self.registry is not None:
            self.registry.check_tool(conn.name, name)
        params = {**(call.params or {}), "name": name}
        headers = None
        if conn.negotiated is not None and conn.negotiated.era == "modern":
            header_map = conn.catalog.param_headers.get(name)
            if header_map:
                headers = param_headers(header_map, params.get("arguments"))
        return await self._forward(conn, call, params, headers)

    async def _prompts_get(self, call: Call) -> dict[str, Any]:
        conn, name = await self._resolve(call, "prompts/list", "prompt")
        return await self._forward(conn, call, {**(call.params or {}), "name": name})

    async def _by_uri(self, call: Call) -> dict[str, Any]:
        uri = (call.params or {}).get("uri")
        if not isinstance(uri, str):
            raise InvalidParams(f"{call.method} needs a string 'uri'")
        call.target = uri
        owner = self.view().owner_of(uri) or self._sole_resource_server()
        if owner is None:
            raise UnknownTarget(f"Resource not found: no server offers {uri!r}", data={"uri": uri})
        return await self._forward(self._connection(owner), call, call.params)

    async def _subscription(self, call: Call) -> dict[str, Any]:
        """Count subscribers per URI; only the first subscribe and the last unsubscribe go upstream."""
        if call.subscriber is None:
            return await self._by_uri(call)
        uri = (call.params or {}).get("uri")
        if not isinstance(uri, str):
            raise InvalidParams(f"{call.method} needs a string 'uri'")
        call.target = uri
        owner = call.scope or self.view().owner_of(uri) or self._sole_resource_server()
        if owner is None:
            raise UnknownTarget(f"Resource not found: no server offers {uri!r}", data={"uri": uri})
        call.server = owner
        on = call.method == "resources/subscribe"
        changed = self._hub.subscribe(call.subscriber, uri) if on else self._hub.unsubscribe(call.subscriber, uri)
        if changed:
            await self.subscribe_upstream(uri, on, owner)
        return {}

    async def subscribe_upstream(self, uri: str, on: bool, owner: str | None = None) -> None:
        """Subscribe (or unsubscribe) the gateway itself at the server that owns `uri`."""
        owner = owner or self.view().owner_of(uri) or self._sole_resource_server()
        conn = self._manager.get(owner) if owner else None
        if conn is None:
            return
        if on:
            conn.resource_subscriptions.add(uri)
        else:
            conn.resource_subscriptions.discard(uri)
        if conn.negotiated is not None and conn.negotiated.era == "modern":
            await conn.update_subscriptions()
        else:
            await conn.call("resources/subscribe" if on else "resources/unsubscribe", {"uri": uri})

    async def _complete(self, call: Call) -> dict[str, Any]:
        params = call.params or {}
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise InvalidParams("completion/complete needs a 'ref' object")
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            parts = split(ref["name"])
            if parts is None or parts[0] not in self._manager.connections:
                raise UnknownTarget(f"Unknown prompt: {ref['name']!r}")
            call.target = ref["name"]
            params = {**params, "ref": {**ref, "name": parts[1]}}
            return await self._forward(self._connection(parts[0]), call, params)
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            owner = self.view().template_owner(ref["uri"]) or self.view().owner_of(ref["uri"])
            if owner is None:
                raise UnknownTarget(f"Unknown resource template: {ref['uri']!r}")
            call.target = ref["uri"]
            return await self._forward(self._connection(owner), call, params)
        raise InvalidParams("completion/complete 'ref' must be a ref/prompt with a name or a ref/resource with a uri")

    async def _passthrough(self, call: Call) -> dict[str, Any]:
        conn = self._connection(call.scope or "")
        params = call.params or {}
        target = params.get("name") or params.get("uri")
        call.target = target if isinstance(target, str) else None
        headers = None
        registry = self.registry
        if call.method == "tools/call" and registry is not None:
            registry.check_tool(conn.name, str(target))
        if call.method == "tools/call" and conn.negotiated is not None and conn.negotiated.era == "modern":
            header_map = conn.catalog.param_headers.get(str(target))
            if header_map:
                headers = param_headers(header_map, params.get("arguments"))
        result = await self._forward(conn, call, call.params, headers)
        if call.method == "tools/list" and registry is not None and isinstance(result.get("tools"), list):
            tools = result["tools"]
            killed = self.dispatcher.traffic.tool_hidden
            result["tools"] = [
                t
                for t in tools
                if not registry.tool_hidden(conn.name, str(t.get("name"))) and not killed(conn.name, str(t.get("name")))
            ]
        return result

    async def _resolve(self, call: Call, list_method: str, kind: str) -> tuple[ServerPool, str]:
        qualified = (call.params or {}).get("name")
        if not isinstance(qualified, str):
            raise InvalidParams(f"{call.method} needs a string 'name'")
        call.target = qualified
        parts = split(qualified)
        if parts is None or parts[0] not in self._manager.connections:
            raise UnknownTarget(f"Unknown {kind}: {qualified!r}")
        conn = self._connection(parts[0])
        if conn.state is State.READY and not conn.catalog.has(list_method, parts[1]):
            await conn.refresh_catalog()  # The server may have added it since we last looked.
            if not conn.catalog.has(list_method, parts[1]):
                raise UnknownTarget(f"Unknown {kind}: {qualified!r}")
        return conn, parts[1]

    async def _forward(
        self,
        conn: ServerPool,
        call: Call,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        call.server = conn.name
        if conn.config.log_payloads:  # the access log reads the server's config as it is now
            call.annotations["log_payloads"] = True
        if conn.forward_headers and call.headers is not None:  # only the headers the server's config lists
            headers = {**(headers or {}), **forwarded(conn.forward_headers, call.headers)}
        span = upstream_span(call, conn.name)  # None unless tracing is on
        if span is not None:  # W3C trace context in the HTTP headers and params._meta
            params, headers = span.inject(params, headers)
        start = time.perf_counter()
        outcome, code = "ok", None
        try:
            tool = params.get("name") if call.method == "tools/call" and params is not None else None
            result = await self.dispatcher.call(conn, call, params, headers, tool if isinstance(tool, str) else None)
            if conn.config.log_payloads:  # for the access log, on servers that opted in
                call.annotations["result"] = result
            return result
        except Exception as exc:
            outcome, code = "error", to_error(exc).get("code")
            raise
        finally:
            elapsed = time.perf_counter() - start
            call.annotations["upstream_seconds"] = call.annotations.get("upstream_seconds", 0.0) + elapsed
            if span is not None:
                span.end(outcome, code)
            if self._events is not None:
                self._events.emit(
                    UpstreamCallFinished(conn.name, call.method, call.target, call.request_id, outcome, code, elapsed)
                )

    def _connection(self, name: str) -> ServerPool:
        conn = self._manager.get(name)
        if conn is None:
            raise UpstreamUnavailable(name, "no such server is configured and enabled")
        return conn

    def _sole_resource_server(self) -> str | None:
        offering = [c.name for c in self._manager.ready() if c.negotiated and "resources" in c.negotiated.capabilities]
        return offering[0] if len(offering) == 1 else None
