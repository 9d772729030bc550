"""Pinned tool definitions: protection against a tool that changes after it was trusted.

The first time the gateway sees a tool (or when an operator approves it), it pins a
SHA-256 over the canonical JSON (sorted keys, no whitespace) of the fields that tell a
model what the tool is and does: `name`, `title`, `description`, `inputSchema`,
`outputSchema` and `annotations`. Fields that only decorate (`icons`, `_meta`) are not
pinned. When a refreshed catalog carries a different definition, the tool drifts:

- `pinning: enforce` (the default): quarantined. It leaves the lists and calls to it are
  refused with `ToolQuarantined`, until an operator approves the new definition.
- `pinning: warn`: logged and announced, still served.
- `pinning: off`: nothing is pinned for that server.

Pins live in memory (the request path asks a dict) and in the store's `tool_pins`
table, so they survive restarts; new pins are written in the background.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from toolway.config.model import NAMESPACE_SEPARATOR
from toolway.observability.events import Events
from toolway.protocol.errors import ToolQuarantined
from toolway.registry.events import ToolApproved
from toolway.registry.events import ToolQuarantined as ToolQuarantinedEvent
from toolway.registry.records import Pin

log = structlog.get_logger("toolway.registry")

PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

Key = tuple[str, str]  # (server, the upstream's own tool name)


def definition(tool: dict[str, Any]) -> dict[str, Any]:
    """The pinned part of a tool as listed: `PINNED_FIELDS` that are present."""
    return {name: tool[name] for name in PINNED_FIELDS if name in tool}


def digest(defn: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a definition."""
    return hashlib.sha256(orjson.dumps(defn, option=orjson.OPT_SORT_KEYS)).hexdigest()


def diff(approved: Any, current: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level differences, each at a JSON Pointer (RFC 6901) path: added, removed or changed."""
    if isinstance(approved, dict) and isinstance(current, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(approved) | set(current)):
            at = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in approved:
                changes.append({"path": at, "change": "added", "current": current[key]})
            elif key not in current:
                changes.append({"path": at, "change": "removed", "approved": approved[key]})
            else:
                changes.extend(diff(approved[key], current[key], at))
        return changes
    if approved != current:
        return [{"path": path, "change": "changed", "approved": approved, "current": current}]
    return []


@dataclass(frozen=True)
class Drift:
    """A tool whose current definition is not the pinned one."""

    pin: Pin
    current: dict[str, Any]
    current_hash: str
    enforced: bool  # quarantined (enforce) or only reported (warn)

    def changes(self) -> list[dict[str, Any]]:
        return diff(self.pin.definition, self.current)

    def fields(self) -> tuple[str, ...]:
        return tuple(sorted({c["path"].split("/")[1] for c in self.changes()}))


class NothingToApprove(LookupError):
    """Approve was asked for a tool the gateway has not seen, or whose definition has not changed."""


class Pinning:
    """Pins, drifts and quarantine for every server's tools.

    `save` is called with new pins to write (in the background); `on_change(server)` when what is
    listed changed (a tool quarantined or released), so merged views rebuild.
    """

    def __init__(self, events: Events, save: Callable[[list[Pin]], None], on_change: Callable[[str], None]) -> None:
        self._events = events
        self._save = save
        self._on_change = on_change
        self._pins: dict[Key, Pin] = {}
        self.drifts: dict[Key, Drift] = {}
        self._quarantined: set[Key] = set()  # enforced drifts: what the request path asks about

    def load(self, pins: Iterable[Pin]) -> None:
        """The pins read from the store at start-up."""
        self._pins = {(p.server, p.name): p for p in pins}

    def pin(self, server: str, tool: str) -> Pin | None:
        return self._pins.get((server, tool))

    def observe(self, server: str, mode: str, tools: Iterable[dict[str, Any]]) -> None:
        """Compare a server's freshly listed tools with their pins (on connect and every refresh)."""
        before = {k for k in self._quarantined if k[0] == server}
        announced = {k: self.drifts.pop(k).current_hash for k in [k for k in self.drifts if k[0] == server]}
        self._quarantined -= before
        new_pins: list[Pin] = []
        if mode != "off":
            for tool in tools:
                name = tool.get("name")
                if not isinstance(name, str):
                    continue
                key = (server, name)
                defn = definition(tool)
                hashed = digest(defn)
                pin = self._pins.get(key)
                if pin is None:
                    pin = Pin(server, name, hashed, defn, "first_seen")
                    self._pins[key] = pin
                    new_pins.append(pin)
                elif pin.hash != hashed:
                    drift = Drift(pin, defn, hashed, enforced=mode == "enforce")
                    self._drifted(drift, was=announced.get(key) == hashed)
        if new_pins:
            self._save(new_pins)
        if before != {k for k in self._quarantined if k[0] == server}:
            self._on_change(server)

    def _drifted(self, drift: Drift, *, was: bool) -> None:
        key = (drift.pin.server, drift.pin.name)
        self.drifts[key] = drift
        if drift.enforced:
            self._quarantined.add(key)
        if was:
            return  # Already announced: the catalog was only refreshed, to the same definition.
        fields = drift.fields()
        log.warning(
            "tool definition changed since it was approved",
            server=key[0],
            tool=key[1],
            fields=list(fields),
            quarantined=drift.enforced,
        )
        self._events.emit(ToolQuarantinedEvent(key[0], key[1], fields, drift.enforced))

    def hidden(self, server: str, tool: str) -> bool:
        """Is this tool quarantined? (One set lookup: asked for every listed tool and every call.)"""
        return (server, tool) in self._quarantined

    def check(self, server: str, tool: str) -> None:
        """Raises `ToolQuarantined` when the tool is quarantined."""
        if (server, tool) in self._quarantined:
            drift = self.drifts[(server, tool)]
            qualified = f"{server}{NAMESPACE_SEPARATOR}{tool}"
            fields = drift.fields()
            raise ToolQuarantined(
                f"tool {qualified!r} is quarantined: its definition ({', '.join(fields)}) changed upstream since"
                f" it was approved; an operator can review it with `toolway tools diff {qualified}`"
                f" and allow it with `toolway tools approve {qualified}`",
                data={"server": server, "tool": tool, "fields": list(fields)},
            )

    def approve(self, server: str, tool: str) -> Pin:
        """Pin the tool's current definition (the caller persists the returned pin).

        Raises:
            NothingToApprove: the tool has not drifted (or was never seen).
        """
        drift = self.drifts.pop((server, tool), None)
        if drift is None:
            seen = (server, tool) in self._pins
            raise NothingToApprove(
                f"tool {server}{NAMESPACE_SEPARATOR}{tool} "
                + ("matches its pinned definition" if seen else "has not been seen by the gateway")
            )
        pin = Pin(server, tool, drift.current_hash, drift.current, "approved")
        self._release(pin)
        return pin

    def adopt(self, pins: Iterable[Pin]) -> None:
        """Pins read back from the store after another replica approved a tool: a drift that the
        new pin resolves (this replica sees the same definition) is released here too."""
        for pin in pins:
            key = (pin.server, pin.name)
            drift = self.drifts.get(key)
            if drift is not None and drift.current_hash == pin.hash:
                del self.drifts[key]
                self._release(pin)
            elif pin.source == "approved":
                self._pins[key] = pin

    def _release(self, pin: Pin) -> None:
        key = (pin.server, pin.name)
        self._pins[key] = pin
        if key in self._quarantined:
            self._quarantined.discard(key)
            self._on_change(pin.server)
        self._events.emit(ToolApproved(pin.server, pin.name))
