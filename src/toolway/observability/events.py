"""Typed events: the chain and the router say what happened; logs, metrics, traces and audit listen.

Emitting is a loop over plain callables, cheap enough for the hot path; a listener
that raises is logged and skipped, never allowed to break a call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from toolway.pipeline.context import Call

log = structlog.get_logger("toolway.events")

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A client request went through the chain (answered, refused or failed)."""

    call: Call
    outcome: str  # "ok" | "tool_error" | "error"
    error_code: int | None
    duration: float  # seconds in the gateway, upstream included
    upstream_duration: float | None  # seconds waiting on the upstream, when one was called


@dataclass(frozen=True, slots=True)
class UpstreamCallFinished:
    """One request the gateway sent to an upstream server on a client's behalf."""

    server: str
    method: str
    target: str | None
    request_id: str
    outcome: str  # "ok" | "error"
    error_code: int | None
    duration: float


@dataclass(frozen=True, slots=True)
class ReplicaStateChanged:
    """A replica's connection changed state (connecting, connected, unreachable)."""

    server: str
    replica: str
    state: str
    error: str | None  # why it is unreachable


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    """A replica's circuit breaker moved (closed, open, half_open)."""

    server: str
    replica: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ReplicaEjected:
    """Outlier detection took a replica out of rotation for `seconds`."""

    server: str
    replica: str
    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A call failed on one replica and is tried again (on another when there is one)."""

    server: str
    replica: str
    method: str
    target: str | None
    request_id: str
    attempt: int  # the attempt that failed, 1 for the first
    cause: str  # the failure's stable cause (`data.cause` of the error it would have been)
    delay: float  # back-off before the next attempt, in seconds


@dataclass(frozen=True, slots=True)
class TrafficChanged:
    """An operator changed traffic control: a kill switch, version weights or a drain."""

    action: str  # "kill" | "revive" | "weights" | "drain" | "undrain"
    server: str
    detail: str  # the tool, the weights, or the replica


@dataclass(frozen=True, slots=True)
class UpstreamSessionOpened:
    """A replica's pool connected a new upstream session (for stdio: started a process)."""

    server: str
    replica: str
    principal: str | None  # the group it serves ("scheme:subject"); None: shared, or a warm spare
    reason: str  # "warm" (opened at start or registration) | "demand" (a call needed it)


@dataclass(frozen=True, slots=True)
class UpstreamSessionClosed:
    """A pool session ended."""

    server: str
    replica: str
    principal: str | None
    reason: str  # "idle" | "evicted" (room for another principal) | "lost" | "dial_failed" | "closed"


@dataclass(frozen=True, slots=True)
class PoolSaturated:
    """A call found no slot on a replica's sessions: it waits (`waits`) or is refused."""

    server: str
    replica: str
    principal: str | None
    waiting: int  # calls already waiting on this replica
    waits: bool


@dataclass(frozen=True, slots=True)
class PoolWaited:
    """A call's wait for a slot ended."""

    server: str
    replica: str
    principal: str | None
    seconds: float
    outcome: str  # "granted" | "timeout" | "cancelled"


class Events:
    def __init__(self) -> None:
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}

    def subscribe(self, kind: type[E], listener: Callable[[E], None]) -> None:
        self._listeners.setdefault(kind, []).append(listener)

    def wants(self, kind: type) -> bool:
        return bool(self._listeners.get(kind))

    def emit(self, event: object) -> None:
        for listener in self._listeners.get(type(event), ()):
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed", event=type(event).__name__)
