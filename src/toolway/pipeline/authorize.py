"""Authorization by scope: the filter that refuses calls, and the per-identity lists.

A call's required permission (`tools:call:<server>/<tool>`, `prompts:get:<server>/<prompt>`,
`resources:read:<server>`) is worked out from its envelope and checked against the
identity's scopes and team boundary; a refusal is a `PermissionDenied` naming the
missing scope. Lists are filtered so an identity never sees what it may not use:
the merged lists of `/mcp` before pagination (`VisibleLists`, the router's hook), the
pages of a `/servers/<name>/mcp` passthrough after the upstream answers.
Calls without an identity (a gateway without authentication) pass untouched.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from toolway.auth.identity import Identity
from toolway.auth.scopes import Authorizer, prompt_permission, resource_permission, tool_permission
from toolway.pipeline.context import Call, Handler
from toolway.protocol.errors import PermissionDenied
from toolway.registry.catalog import LISTS
from toolway.router.names import split
from toolway.router.view import View

_ITEMS_KEY = {method: key for method, (_, key) in LISTS.items()}
_BY_URI = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
_LIST_CACHE = 1024
Owner = Callable[[str], str | None]


class Authorize:
    """The chain's authorization stage."""

    def __init__(self, authorizer: Authorizer, owner_of: Owner, template_owner: Owner) -> None:
        self._authorizer = authorizer
        self._owner_of = owner_of
        self._template_owner = template_owner

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
        identity = call.identity
        if identity is None:
            return await next_(call)
        self._check(identity, call)
        result = await next_(call)
        if call.scope is not None and call.method in LISTS:
            return self._filter_page(identity, call.scope, call.method, result)
        return result

    def _check(self, identity: Identity, call: Call) -> None:
        required = self._required(call)
        if required is None:
            return
        server, permission = required
        call.server = call.server or server  # so a refusal is logged and audited against its target
        if call.target is None:
            target = (call.params or {}).get("name") or (call.params or {}).get("uri")
            call.target = target if isinstance(target, str) else None
        if not self._authorizer.sees_server(identity, server):
            raise PermissionDenied(
                f"Permission denied: server {server!r} is outside the boundary of team {identity.team!r}",
                required=permission,
            )
        if not self._authorizer.allows(identity, server, permission):
            raise PermissionDenied(f"Permission denied: {call.method} needs scope {permission!r}", required=permission)

    def _required(self, call: Call) -> tuple[str, str] | None:
        """(server, permission) the call needs; None when it needs none, or when the router
        will refuse it anyway (an unknown name: the router says so)."""
        params = call.params or {}
        method = call.method
        if method in ("tools/call", "prompts/get"):
            name = params.get("name")
            if not isinstance(name, str):
                return None
            parts = (call.scope, name) if call.scope is not None else split(name)
            if parts is None:
                return None
            make = tool_permission if method == "tools/call" else prompt_permission
            return parts[0], make(parts[0], parts[1])
        if method in _BY_URI:
            uri = params.get("uri")
            server = call.scope or (self._owner_of(uri) if isinstance(uri, str) else None)
            return (server, resource_permission(server)) if server else None
        if method == "completion/complete":
            return self._completion(call.scope, params.get("ref"))
        if call.scope is not None and method not in LISTS and method not in ("ping", "initialize", "server/discover"):
            # Anything else sent through a single-server endpoint: the server must be in bounds.
            return call.scope, f"server:{call.scope}"
        return None

    def _completion(self, scope: str | None, ref: Any) -> tuple[str, str] | None:
        if not isinstance(ref, dict):
            return None
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            parts = (scope, ref["name"]) if scope is not None else split(ref["name"])
            return (parts[0], prompt_permission(parts[0], parts[1])) if parts else None
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            server = scope or self._template_owner(ref["uri"]) or self._owner_of(ref["uri"])
            return (server, resource_permission(server)) if server else None
        return None

    def _filter_page(self, identity: Identity, server: str, method: str, result: dict[str, Any]) -> dict[str, Any]:
        key = _ITEMS_KEY[method]
        items = result.get(key)
        if not isinstance(items, list):
            return result
        dicts = [item for item in items if isinstance(item, dict)]
        origins = [(server, item["name"] if isinstance(item.get("name"), str) else None) for item in dicts]
        kept = self._authorizer.filter_items(identity, method, dicts, origins)
        return {**result, key: kept}


class VisibleLists:
    """The router's hook: a merged list as one identity may see it, cached per catalog generation.

    Identities with the same scopes and team share an entry, so a fleet of agents with
    one role costs one filtered copy per list, rebuilt only when a catalog changes.
    """

    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer
        self._cache: OrderedDict[tuple[int, str, frozenset[str], str | None], list[dict[str, Any]]] = OrderedDict()

    def __call__(self, call: Call, view: View) -> list[dict[str, Any]]:
        identity = call.identity
        assert identity is not None
        key = (view.generation, call.method, identity.scopes, identity.team)
        items = self._cache.get(key)
        if items is None:
            items = self._authorizer.filter_items(
                identity, call.method, view.lists.get(call.method, []), view.origins.get(call.method, ())
            )
            self._cache[key] = items
            if len(self._cache) > _LIST_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return items
