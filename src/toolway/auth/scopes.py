"""Scopes: what an identity may do, as strings like `tools:call:<server>/<tool>`.

Permissions the gateway checks:

- `tools:call:<server>/<tool>`     calling a tool (and seeing it in `tools/list`)
- `prompts:get:<server>/<prompt>`  getting a prompt (and seeing it in `prompts/list`)
- `resources:read:<server>`        reading a server's resources (and seeing them listed)

A granted scope may hold `*` wildcards, each matching any run of characters:
`tools:call:web/*`, `tools:call:*`, `*:*:web/*`, `*`. Team boundaries (config
`auth.teams`) come first: a server outside the identity's team is invisible whatever
its scopes say. Decisions are cached per (scopes, team, permission), so a repeat is a
dict lookup.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from toolway.auth.identity import Identity
from toolway.config.auth import TeamConfig

_CACHE_SIZE = 65_536


def tool_permission(server: str, tool: str) -> str:
    return f"tools:call:{server}/{tool}"


def prompt_permission(server: str, prompt: str) -> str:
    return f"prompts:get:{server}/{prompt}"


def resource_permission(server: str) -> str:
    return f"resources:read:{server}"


@lru_cache(maxsize=4096)
def _pattern(scope: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in scope.split("*")), re.DOTALL)


def granted(scopes: frozenset[str], permission: str) -> bool:
    """Does any of `scopes` (wildcards allowed) grant `permission`?"""
    if permission in scopes:
        return True
    return any(_pattern(scope).fullmatch(permission) for scope in scopes if "*" in scope)


class Authorizer:
    """Scope and team decisions for identities, cached; the one place that makes them."""

    def __init__(self, teams: Mapping[str, TeamConfig]) -> None:
        self._teams = {name: frozenset(team.servers) for name, team in teams.items()}
        self._bounded = bool(teams)
        self._decisions: OrderedDict[tuple[frozenset[str], str | None, str], bool] = OrderedDict()

    def sees_server(self, identity: Identity, server: str) -> bool:
        """Is `server` inside the identity's team boundary? (Always, when no teams are configured.)"""
        if not self._bounded:
            return True
        servers = self._teams.get(identity.team or "")
        return servers is not None and ("*" in servers or server in servers)

    def allows(self, identity: Identity, server: str, permission: str) -> bool:
        """May `identity` exercise `permission` on `server`?"""
        key = (identity.scopes, identity.team, permission)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self.sees_server(identity, server) and granted(identity.scopes, permission)
            self._decisions[key] = decision
            if len(self._decisions) > _CACHE_SIZE:
                self._decisions.popitem(last=False)
        return decision

    def uses_server(self, identity: Identity, server: str, catalog: Mapping[str, Sequence[Mapping[str, Any]]]) -> bool:
        """May `identity` use anything `server` offers (`catalog`: list method -> items)? Discovery
        shows a caller only such servers, just as lists show it only what it may use."""
        if not self.sees_server(identity, server):
            return False
        for method in ("tools/list", "prompts/list"):
            for item in catalog.get(method, ()):
                permission = self.item_permission(method, server, item)
                if permission is not None and self.allows(identity, server, permission):
                    return True
        offers_resources = any(catalog.get(m) for m in ("resources/list", "resources/templates/list"))
        return offers_resources and self.allows(identity, server, resource_permission(server))

    def item_permission(self, method: str, server: str, item: Mapping[str, object]) -> str | None:
        """The permission that lets a caller see `item` of list `method` from `server`
        (`name` is the server's own, un-namespaced name)."""
        if method == "tools/list":
            name = item.get("name")
            return tool_permission(server, name) if isinstance(name, str) else None
        if method == "prompts/list":
            name = item.get("name")
            return prompt_permission(server, name) if isinstance(name, str) else None
        return resource_permission(server)

    def filter_items(
        self,
        identity: Identity,
        method: str,
        items: Sequence[dict[str, Any]],
        origins: Sequence[tuple[str, str | None]],
    ) -> list[dict[str, Any]]:
        """The items the identity may use; `origins[i]` is (server, own name) of `items[i]`."""
        visible = []
        for item, (server, name) in zip(items, origins, strict=True):
            permission = self.item_permission(method, server, {"name": name})
            if permission is not None and self.allows(identity, server, permission):
                visible.append(item)
        return visible
