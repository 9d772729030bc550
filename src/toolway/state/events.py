"""Typed change events that replicas send each other through the state backend.

Each says *what* changed, small and self-contained; where the truth lives elsewhere
(a registration, a pin, an API key: the SQL store) the event only names it and the
receiver re-reads it. Every event travels with its sender's `origin`, so a gateway can
ignore its own (echo suppression).

On the wire (a Redis channel, or the memory backend's queues) an event is one JSON
object: `{"v": 1, "type": "traffic", "origin": "<gateway id>", "data": {...}}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

WIRE_VERSION = 1


@dataclass(frozen=True, slots=True)
class TrafficSet:
    """One traffic-control field changed (state/traffic.py names the fields); `value` None: cleared."""

    field: str
    value: str | None


@dataclass(frozen=True, slots=True)
class ServerChanged:
    """A server was registered, updated, enabled, disabled or removed: re-read its entry from the store.

    `enabled` is set for a file-managed server switched at run time (the store does not keep that).
    """

    server: str
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class PinApproved:
    """An operator approved a tool's current definition: re-read its pin from the store."""

    server: str
    tool: str  # the upstream's own name


@dataclass(frozen=True, slots=True)
class KeysChanged:
    """An API key was created or revoked: re-read the active keys from the store."""


ChangeEvent = TrafficSet | ServerChanged | PinApproved | KeysChanged

_TYPES: dict[str, type[ChangeEvent]] = {
    "traffic": TrafficSet,
    "server": ServerChanged,
    "pin": PinApproved,
    "keys": KeysChanged,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
# The JSON types each field may have (checked once, when an event arrives).
_SHAPES: dict[type[ChangeEvent], dict[str, tuple[type, ...]]] = {
    TrafficSet: {"field": (str,), "value": (str, type(None))},
    ServerChanged: {"server": (str,), "enabled": (bool, type(None))},
    PinApproved: {"server": (str,), "tool": (str,)},
    KeysChanged: {},
}


class BadEvent(ValueError):
    """A message on the change channel that is not a change event this version understands."""


def encode(origin: str, event: ChangeEvent) -> bytes:
    """The wire form of `event`, sent by the gateway `origin`."""
    return orjson.dumps(
        {"v": WIRE_VERSION, "type": _NAMES[type(event)], "origin": origin, "data": dataclasses.asdict(event)}
    )


def decode(raw: bytes | str) -> tuple[str, ChangeEvent]:
    """(origin, event) from the wire form.

    Raises:
        BadEvent: not JSON, an unknown type or version, or fields that do not fit the type.
    """
    try:
        message: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or message.get("v") != WIRE_VERSION:
        raise BadEvent(f"not a version-{WIRE_VERSION} change event")
    cls = _TYPES.get(message.get("type"))  # type: ignore[arg-type]
    origin, data = message.get("origin"), message.get("data")
    if cls is None or not isinstance(origin, str) or not isinstance(data, dict):
        raise BadEvent(f"unknown event type {message.get('type')!r}, or no origin or data")
    shape = _SHAPES[cls]
    for name, value in data.items():
        if name not in shape or not isinstance(value, shape[name]):
            raise BadEvent(f"{message['type']} event: unexpected field {name}={value!r}")
    try:
        return origin, cls(**data)
    except TypeError as exc:  # a required field missing
        raise BadEvent(f"{message['type']} event: {exc}") from None


# -- What this gateway's link to the backend went through: emitted on the local event bus
# -- (`observability/events.py`) for logs, metrics and tests; never sent to other replicas.


@dataclass(frozen=True, slots=True)
class StateSynced:
    """Subscribed to the change channel and re-read the shared state (`resumed`: after a loss)."""

    backend: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class StateLost:
    """The backend went away: the gateway serves from its copy and reconnects with back-off."""

    backend: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChangeApplied:
    """A change event from another replica was applied here."""

    event: ChangeEvent
    origin: str
