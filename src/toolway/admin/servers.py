"""The registry's admin REST API (JSON, raw ASGI), on the admin listener.

One route table: the dispatcher below and the OpenAPI document (`admin/openapi.py`)
both read it, so a route cannot exist undocumented. Errors are `{"error": message,
"field": name-or-null}` with 400 (bad body or query), 404 (no such server or tool),
409 (the name is taken, the server is file-managed, nothing to approve) or 503 (the
store failed).

Every change is announced to the other replicas through the state backend
(`state/registry.py`), which re-read it from the shared store.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from toolway.ingress.asgi import BodyTooLarge, read_body, respond_json
from toolway.registry.discovery import Discovery
from toolway.registry.entries import Conflict, NotFound, RegistryError
from toolway.registry.pinning import NothingToApprove
from toolway.registry.service import Registry
from toolway.router.names import split
from toolway.state.events import ChangeEvent, PinApproved, ServerChanged

MAX_BODY = 1024 * 1024
HEALTH_LIMIT, HEALTH_MAX_LIMIT = 100, 1000

Handler = Callable[["Request"], Awaitable[tuple[int, Any]]]


@dataclass
class Request:
    scope: dict[str, Any]
    receive: Any
    params: dict[str, str]

    async def json(self) -> Any:
        try:
            body = await read_body(self.receive, MAX_BODY)
        except BodyTooLarge:
            raise RegistryError(f"the body is larger than {MAX_BODY} bytes") from None
        try:
            return orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"the body is not JSON: {exc}") from None

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.scope.get("query_string", b"").decode()).items()}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /admin/servers/{name}
    summary: str
    handler: str  # the RegistryApi method's name
    body: str | None = None  # "server": a server config entry (`ServerConfig`); "partial": some of its fields
    response: str = "object"  # a schema name in admin/openapi.py

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/admin/servers", "List every registered server with its state", "list", response="ServerList"),
    Route("POST", "/admin/servers", "Register a server (connected at once)", "register", "server", "Server"),
    Route("GET", "/admin/servers/{name}", "One server: config, state, health, compatibility", "get", response="Server"),
    Route("PUT", "/admin/servers/{name}", "Replace an API-managed server's config", "update", "server", "Server"),
    Route("PATCH", "/admin/servers/{name}", "Change fields of an API-managed server", "patch", "partial", "Server"),
    Route(
        "DELETE", "/admin/servers/{name}", "Deregister: drain calls in flight, then remove", "remove", None, "Removed"
    ),
    Route("POST", "/admin/servers/{name}/enable", "Enable a server", "enable", response="Server"),
    Route("POST", "/admin/servers/{name}/disable", "Disable a server (drained first)", "disable", response="Server"),
    Route("POST", "/admin/servers/{name}/heartbeat", "A remote server says it is alive", "heartbeat"),
    Route("GET", "/admin/servers/{name}/health", "Current health and its history", "health", response="Health"),
    Route("GET", "/admin/tools/{name}/diff", "A tool's pinned and current definitions", "diff", response="ToolDiff"),
    Route("POST", "/admin/tools/{name}/approve", "Pin a changed tool's current definition", "approve"),
)


class RegistryApi:
    """Dispatches the routes above; `discovery` also serves `/v0.1/servers` here."""

    def __init__(
        self,
        registry: Registry,
        discovery: Discovery,
        announce: Callable[[ChangeEvent], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._discovery = discovery
        self._announce = announce  # tells the other replicas (SharedState.announce); never raises
        self._table = [(route, route.pattern(), getattr(self, "_" + route.handler)) for route in ROUTES]

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """Answer the request if it is a registry route; False when the path is not one."""
        path: str = scope["path"]
        if self._discovery.handles(path):
            await self._discovery(scope, receive, send)
            return True
        raw = (scope.get("raw_path") or path.encode()).decode("latin-1").split("?", 1)[0]
        allowed: list[str] = []
        for route, pattern, handler in self._table:
            match = pattern.match(raw)
            if match is None:
                continue
            if route.method != scope["method"]:
                allowed.append(route.method)
                continue
            params = {key: unquote(value) for key, value in match.groupdict().items()}
            try:
                status, body = await handler(Request(scope, receive, params))
            except RegistryError as exc:
                status, body = exc.status, {"error": exc.message, "field": exc.field}
            except ConnectionResetError:
                return True
            await respond_json(send, status, body)
            return True
        if allowed:
            await respond_json(
                send,
                405,
                {"error": f"{scope['method']} is not allowed on {path}", "field": None},
                [(b"allow", ", ".join(allowed).encode())],
            )
            return True
        return False

    async def _list(self, request: Request) -> tuple[int, Any]:
        return 200, {"servers": [self._registry.describe(name) for name in self._registry.names()]}

    async def _register(self, request: Request) -> tuple[int, Any]:
        return 201, await self._changed(await self._registry.register(await request.json()))

    async def _get(self, request: Request) -> tuple[int, Any]:
        return 200, self._registry.describe(request.params["name"])

    async def _update(self, request: Request) -> tuple[int, Any]:
        return 200, await self._changed(await self._registry.update(request.params["name"], await request.json()))

    async def _patch(self, request: Request) -> tuple[int, Any]:
        body = await self._registry.update(request.params["name"], await request.json(), merge=True)
        return 200, await self._changed(body)

    async def _remove(self, request: Request) -> tuple[int, Any]:
        removed = await self._registry.remove(request.params["name"])
        if self._announce is not None:
            await self._announce(ServerChanged(request.params["name"]))
        return 200, removed

    async def _enable(self, request: Request) -> tuple[int, Any]:
        return 200, await self._changed(await self._registry.set_enabled(request.params["name"], True))

    async def _disable(self, request: Request) -> tuple[int, Any]:
        return 200, await self._changed(await self._registry.set_enabled(request.params["name"], False))

    async def _heartbeat(self, request: Request) -> tuple[int, Any]:
        return 200, self._registry.heartbeat(request.params["name"])

    async def _health(self, request: Request) -> tuple[int, Any]:
        raw = request.query().get("limit") or str(HEALTH_LIMIT)
        if not raw.isdigit() or not 0 < int(raw) <= HEALTH_MAX_LIMIT:
            raise RegistryError(f"limit must be an integer from 1 to {HEALTH_MAX_LIMIT}", "limit")
        return 200, await self._registry.health_history(request.params["name"], int(raw))

    async def _diff(self, request: Request) -> tuple[int, Any]:
        qualified, server, tool = self._tool(request)
        pinning = self._registry.pinning
        drift = pinning.drifts.get((server, tool))
        if drift is not None:
            return 200, {
                "tool": qualified,
                "status": "quarantined" if drift.enforced else "changed",
                "pinned_hash": drift.pin.hash,
                "current_hash": drift.current_hash,
                "changes": drift.changes(),
                "approved": drift.pin.definition,
                "current": drift.current,
            }
        pin = pinning.pin(server, tool)
        if pin is None:
            raise NotFound(f"the gateway has not seen a tool named {qualified!r}")
        return 200, {
            "tool": qualified,
            "status": "pinned",
            "pinned_hash": pin.hash,
            "current_hash": pin.hash,
            "changes": [],
            "approved": pin.definition,
            "current": pin.definition,
        }

    async def _approve(self, request: Request) -> tuple[int, Any]:
        qualified, server, tool = self._tool(request)
        try:
            pin = self._registry.pinning.approve(server, tool)
        except NothingToApprove as exc:
            raise Conflict(str(exc)) from None
        await self._registry.save_pin(pin)
        if self._announce is not None:
            await self._announce(PinApproved(server, tool))
        return 200, {"tool": qualified, "status": "approved", "pinned_hash": pin.hash}

    async def _changed(self, server: dict[str, Any]) -> dict[str, Any]:
        """Announce a server's new registration (as `describe` shows it); returns it."""
        if self._announce is not None:
            # A file-managed server's run-time switch is not in the store: the event carries it.
            enabled = server["enabled"] if server["managed_by"] == "file" else None
            await self._announce(ServerChanged(server["name"], enabled))
        return server

    @staticmethod
    def _tool(request: Request) -> tuple[str, str, str]:
        qualified = request.params["name"]
        parts = split(qualified)
        if parts is None:
            raise RegistryError(f"{qualified!r} is not a namespaced tool name (server__tool)", "name")
        return qualified, parts[0], parts[1]
