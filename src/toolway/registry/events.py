"""The registry's change events, on the gateway's event bus (`observability/events.py`).

Any component subscribes with `events.subscribe(CatalogChanged, listener)`. They are
emitted in this process; a shared state backend will carry them to other replicas.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerRegistered:
    """A server was registered (or its registration replaced) and is being connected if enabled."""

    server: str
    managed_by: str  # "file" | "api"
    replaced: bool


@dataclass(frozen=True, slots=True)
class ServerRemoved:
    """A server was deregistered; `drained` says whether its calls in flight all finished first."""

    server: str
    drained: bool


@dataclass(frozen=True, slots=True)
class ServerEnabled:
    """A server was enabled or disabled at run time."""

    server: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """A server's health state changed ("healthy", "unhealthy", "hidden")."""

    server: str
    previous: str
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """A server's catalog differs from the last one seen: names per list method."""

    server: str
    added: tuple[str, ...]  # "tools/list:echo", "resources/list:file:///x", …
    removed: tuple[str, ...]
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolQuarantined:
    """A pinned tool's definition changed upstream; with `pinning: enforce` it is refused."""

    server: str
    tool: str  # the upstream's own name
    fields: tuple[str, ...]  # top-level fields that differ from the approved definition
    enforced: bool  # False under `pinning: warn`: logged, still served


@dataclass(frozen=True, slots=True)
class ToolApproved:
    """An operator approved a tool's current definition: it is pinned anew and served again."""

    server: str
    tool: str
