"""One server's catalog: the tools, prompts, resources and templates it reported.

Fetched when the gateway connects to the server (every page), kept as an
immutable snapshot, and swapped whole when refreshed. Lists are answered from
these snapshots, so a `tools/list` never waits on an upstream.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from toolway.protocol.modern import encode_header_value

_MAX_PAGES = 1000
Fetch = Callable[[str, dict[str, Any] | None], Awaitable[dict[str, Any]]]

# list method -> (capability that must be declared, key of the items in the result)
LISTS: dict[str, tuple[str, str]] = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resources", "resourceTemplates"),
}


@dataclass(frozen=True)
class ServerCatalog:
    items: dict[str, tuple[dict[str, Any], ...]]  # list method -> items as the server sent them
    ttl_ms: int | None = None  # smallest ttlMs the server gave (stateless era), None if none
    private: bool = False  # any list said cacheScope "private"
    param_headers: dict[str, dict[tuple[str, ...], str]] = field(default_factory=dict)

    def get(self, method: str) -> tuple[dict[str, Any], ...]:
        return self.items.get(method, ())

    def tool(self, name: str) -> dict[str, Any] | None:
        return self._by_name.get("tools/list", {}).get(name)

    def has(self, method: str, name: str) -> bool:
        """Does the list `method` hold an item called `name`? (A dict lookup: routing asks per call.)"""
        return name in self._by_name.get(method, {})

    @cached_property
    def _by_name(self) -> dict[str, dict[str, dict[str, Any]]]:
        index: dict[str, dict[str, dict[str, Any]]] = {}
        for method, items in self.items.items():
            named = index.setdefault(method, {})
            for item in items:
                if isinstance(item.get("name"), str):
                    named.setdefault(item["name"], item)  # the first of a duplicated name wins
        return index


EMPTY = ServerCatalog(items={})


async def fetch_catalog(capabilities: dict[str, Any], fetch: Fetch) -> ServerCatalog:
    """Fetch every page of every list the server's capabilities declare.

    Raises whatever `fetch` raises; a server that paginates forever is cut off.
    """
    items: dict[str, tuple[dict[str, Any], ...]] = {}
    ttl: int | None = None
    private = False
    for method, (capability, key) in LISTS.items():
        if capability not in capabilities:
            continue
        collected: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            result = await fetch(method, {"cursor": cursor} if cursor else None)
            page = result.get(key)
            if isinstance(page, list):
                collected.extend(item for item in page if _well_formed(method, item))
            page_ttl = result.get("ttlMs")
            if isinstance(page_ttl, int) and not isinstance(page_ttl, bool) and page_ttl >= 0:
                ttl = page_ttl if ttl is None else min(ttl, page_ttl)
            private = private or result.get("cacheScope") == "private"
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        items[method] = tuple(collected)
    headers = {t["name"]: param_header_map(t.get("inputSchema")) for t in items.get("tools/list", ())}
    return ServerCatalog(
        items=items,
        ttl_ms=ttl,
        private=private,
        param_headers={name: m for name, m in headers.items() if m},
    )


# The field that names each list's items; an item without it cannot be routed to.
_KEY_FIELD = {
    "tools/list": "name",
    "prompts/list": "name",
    "resources/list": "uri",
    "resources/templates/list": "uriTemplate",
}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: a valid header-name suffix


def _well_formed(method: str, item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get(_KEY_FIELD[method]), str)


def param_header_map(schema: Any) -> dict[tuple[str, ...], str]:
    """Properties annotated `x-mcp-header` along pure `properties` chains -> header token.

    A stateless-era server expects `Mcp-Param-<token>` headers mirroring these
    arguments, so the gateway sets them when it calls the tool.
    """
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        token = node.get("x-mcp-header")
        if (
            path
            and isinstance(token, str)
            and _TOKEN.fullmatch(token)
            and node.get("type") in ("string", "integer", "boolean")
        ):
            found[path] = token
        props = node.get("properties")
        if isinstance(props, dict):
            stack.extend(((*path, name), sub) for name, sub in props.items())
    return found


def param_headers(header_map: dict[tuple[str, ...], str], arguments: Any) -> dict[str, str]:
    """The `Mcp-Param-*` headers for one call's arguments."""
    headers: dict[str, str] = {}
    for path, token in header_map.items():
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or not isinstance(value, str | int | float | bool):
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        headers[f"Mcp-Param-{token}"] = encode_header_value(text)
    return headers


def catalog_diff(old: ServerCatalog, new: ServerCatalog) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(added, removed, changed) items across every list, each as "method:key"."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for method in LISTS:
        key = _KEY_FIELD[method]
        before = {item[key]: item for item in old.get(method) if isinstance(item.get(key), str)}
        after = {item[key]: item for item in new.get(method) if isinstance(item.get(key), str)}
        added += [f"{method}:{k}" for k in after if k not in before]
        removed += [f"{method}:{k}" for k in before if k not in after]
        changed += [f"{method}:{k}" for k in after if k in before and after[k] != before[k]]
    return tuple(added), tuple(removed), tuple(changed)
