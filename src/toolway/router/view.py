"""The aggregated catalog: every connected server's lists merged under one namespace.

Built from the per-server snapshots when they change (never per request), so a
list request is a slice of a ready-made list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from toolway.registry.catalog import LISTS, ServerCatalog
from toolway.router.names import qualify
from toolway.sessions.pool import ServerPool

_NAMESPACED = ("tools/list", "prompts/list")


@dataclass(frozen=True)
class View:
    generation: int
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ttl_ms: int = 0
    private: bool = True
    resource_owner: dict[str, str] = field(default_factory=dict)
    templates: tuple[tuple[re.Pattern[str], str, str], ...] = ()  # (matcher, server, uriTemplate)
    # Per list, parallel to `lists`: the server of each item and its own (un-namespaced) name,
    # so authorization can filter a list per identity before it is paginated.
    origins: dict[str, tuple[tuple[str, str | None], ...]] = field(default_factory=dict)

    def owner_of(self, uri: str) -> str | None:
        """The server that listed this URI, else the first whose template matches it."""
        owner = self.resource_owner.get(uri)
        if owner is not None:
            return owner
        return next((server for pattern, server, _ in self.templates if pattern.fullmatch(uri)), None)

    def template_owner(self, template: str) -> str | None:
        return next((server for _, server, t in self.templates if t == template), None)


def build_view(
    generation: int,
    connections: list[ServerPool],
    hide_tool: Callable[[str, str], bool] | None = None,
    catalog_of: Callable[[ServerPool], ServerCatalog] | None = None,
    *,
    hidden_servers: Collection[str] = (),
) -> View:
    """Merge catalogs in config order; on a URI collision the first server wins.

    `hide_tool(server, name)` leaves tools out (quarantined by the registry's pins, killed);
    `catalog_of(server)` replaces `server.catalog` (the registry keeps a server's last
    catalog listed through its health grace period). `hidden_servers` (switched off by an
    operator) list nothing, but still own their resources, so a request for one gets the
    kill switch's error rather than "not found".
    """
    lists: dict[str, list[dict[str, Any]]] = {method: [] for method in LISTS}
    origins: dict[str, list[tuple[str, str | None]]] = {method: [] for method in LISTS}
    owners: dict[str, str] = {}
    templates: list[tuple[re.Pattern[str], str, str]] = []
    ttls: list[int] = []
    private = False
    for conn in connections:
        catalog = catalog_of(conn) if catalog_of is not None else conn.catalog
        for method in LISTS if conn.name not in hidden_servers else ():
            for item in catalog.get(method):
                own = item.get("name")
                if hide_tool is not None and method == "tools/list" and hide_tool(conn.name, str(own)):
                    continue
                if method in _NAMESPACED and isinstance(own, str):
                    item = {**item, "name": qualify(conn.name, own)}
                lists[method].append(item)
                origins[method].append((conn.name, own if isinstance(own, str) else None))
        for resource in catalog.get("resources/list"):
            uri = resource.get("uri")
            if isinstance(uri, str):
                owners.setdefault(uri, conn.name)
        for template in catalog.get("resources/templates/list"):
            text = template.get("uriTemplate")
            if isinstance(text, str):
                templates.append((template_pattern(text), conn.name, text))
        # A server that gave no ttlMs promised nothing: its lists may change at any time.
        ttls.append(catalog.ttl_ms if catalog.ttl_ms is not None else 0)
        private = private or catalog.private or conn.negotiated is None or conn.negotiated.era != "modern"
    return View(
        generation=generation,
        lists=lists,
        ttl_ms=min(ttls) if ttls else 0,
        private=private or not connections,
        resource_owner=owners,
        templates=tuple(templates),
        origins={method: tuple(pairs) for method, pairs in origins.items()},
    )


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def template_pattern(template: str) -> re.Pattern[str]:
    """A matcher for URIs an RFC 6570 template can expand to (levels 1-2, enough to route)."""
    parts: list[str] = []
    last = 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        operator = match.group(1)
        parts.append(".*" if operator in ("+", "#") else "[^/?#]*" if operator == "" else ".*")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts), re.DOTALL)
