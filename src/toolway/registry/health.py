"""Server health: periodic probes, heartbeats, thresholds, and a grace period before hiding.

Each watched server has a probe loop (on the injected clock) that every
`health.interval_seconds` checks, within `health.timeout_seconds`:

- stdio: that the child process is alive, then the MCP probe below;
  (a server with several replicas is probed through its primary, the replica its lists come
  from; each replica's own health is the pool's business: breakers, outlier ejection)
- handshake era: MCP `ping`;
- stateless era (2026-07-28): `server/discover`.

`unhealthy_after` consecutive failures make a server *unhealthy*; a lost connection
does so at once (it is definitive). An unhealthy server stays listed for
`grace_seconds` (its calls fail fast meanwhile), then is *hidden*: its tools, prompts
and resources leave the merged lists. `healthy_after` consecutive successes (a probe,
a reconnect, or a heartbeat pushed to `POST /admin/servers/<name>/heartbeat`) make it
*healthy* again and it returns to the lists. Transitions, never single probes, are
announced (`HealthChanged`) and written to the store's health history.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from toolway.clock import Clock
from toolway.config.model import Health, StdioServerConfig
from toolway.observability.events import Events
from toolway.protocol.errors import UpstreamError, UpstreamRpcError
from toolway.registry.events import HealthChanged
from toolway.registry.records import HealthEvent
from toolway.sessions.pool import ServerPool
from toolway.sessions.upstream import State

log = structlog.get_logger("toolway.registry")

UNKNOWN, HEALTHY, UNHEALTHY, HIDDEN = "unknown", "healthy", "unhealthy", "hidden"


@dataclass
class Tracker:
    """One server's health: its state, counters, and when the state began (monotonic)."""

    config: Health
    state: str = UNKNOWN
    since: float = 0.0
    failures: int = 0
    successes: int = 0
    last_error: str | None = None
    last_probe: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "state": self.state,
            "for_seconds": round(now - self.since, 3),
            "consecutive_failures": self.failures,
            "consecutive_successes": self.successes,
            "last_error": self.last_error,
        }


class HealthMonitor:
    """Health of every watched server. Probe loops run in the caller's task group (`spawn`).

    `record` is called with each transition to store (in the background); `on_change(server)`
    when a server's listing may have changed, so merged views rebuild.
    """

    def __init__(
        self,
        clock: Clock,
        events: Events,
        *,
        now: Callable[[], datetime],
        record: Callable[[HealthEvent], None],
        on_change: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self._events = events
        self._now = now
        self._record = record
        self._on_change = on_change
        self._trackers: dict[str, Tracker] = {}

    def watch(self, conn: ServerPool, spawn: Callable[[str, ServerPool], asyncio.Task[None]]) -> None:
        """Start tracking `conn` (its probe loop is started with `spawn(name, conn)`)."""
        self.unwatch(conn.name)
        tracker = Tracker(conn.config.health, since=self._clock.now())
        self._trackers[conn.name] = tracker
        tracker.task = spawn(conn.name, conn)
        self.connection_changed(conn)  # it may have connected (or failed) already

    def unwatch(self, name: str) -> None:
        tracker = self._trackers.pop(name, None)
        if tracker is not None and tracker.task is not None:
            tracker.task.cancel()

    def state(self, name: str) -> Tracker | None:
        return self._trackers.get(name)

    def listed(self, conn: ServerPool) -> bool:
        """Does `conn` belong in the merged lists? Connected and not hidden, or unhealthy in its grace."""
        tracker = self._trackers.get(conn.name)
        if conn.negotiated is None:
            return False
        if tracker is None:
            return conn.state is State.READY
        if tracker.state == HIDDEN:
            return False
        return conn.state is State.READY or tracker.state == UNHEALTHY

    def connection_changed(self, conn: ServerPool) -> None:
        """Manager listener: a lost connection is a definitive failure; a new one a success."""
        if conn.name not in self._trackers:
            return
        if conn.state is State.DOWN:
            self.failure(conn.name, conn.last_error or "the connection was lost", definitive=True)
        elif conn.state is State.READY:
            self.success(conn.name, "connected")

    def success(self, name: str, source: str) -> bool:
        """A probe passed, a heartbeat arrived, or the server (re)connected. False: not watched."""
        tracker = self._trackers.get(name)
        if tracker is None:
            return False
        tracker.failures, tracker.successes = 0, tracker.successes + 1
        tracker.last_probe = self._clock.now()
        if tracker.state == UNKNOWN or (
            tracker.state in (UNHEALTHY, HIDDEN) and tracker.successes >= tracker.config.healthy_after
        ):
            tracker.last_error = None
            self._transition(name, tracker, HEALTHY, f"{source}")
        return True

    def failure(self, name: str, reason: str, *, definitive: bool = False) -> None:
        tracker = self._trackers.get(name)
        if tracker is None:
            return
        tracker.successes, tracker.failures = 0, tracker.failures + 1
        tracker.last_error = reason
        tracker.last_probe = self._clock.now()
        if tracker.state in (UNKNOWN, HEALTHY) and (definitive or tracker.failures >= tracker.config.unhealthy_after):
            self._transition(name, tracker, UNHEALTHY, reason)
        self._expire_grace(name, tracker)

    def _expire_grace(self, name: str, tracker: Tracker) -> None:
        if tracker.state == UNHEALTHY and self._clock.now() - tracker.since >= tracker.config.grace_seconds:
            self._transition(name, tracker, HIDDEN, f"unhealthy for {tracker.config.grace_seconds:g}s (grace)")

    def _transition(self, name: str, tracker: Tracker, state: str, reason: str | None) -> None:
        previous, tracker.state, tracker.since = tracker.state, state, self._clock.now()
        log.info("server health changed", server=name, previous=previous, state=state, reason=reason)
        self._record(HealthEvent(name, self._now(), previous, state, reason))
        self._events.emit(HealthChanged(name, previous, state, reason))
        self._on_change(name)

    async def run(self, name: str, conn: ServerPool) -> None:
        """One server's probe loop, until cancelled."""
        tracker = self._trackers.get(name)
        while tracker is not None and self._trackers.get(name) is tracker:
            await self._clock.sleep(self._wait(tracker))
            if tracker.state == UNHEALTHY and self._clock.now() - tracker.since >= tracker.config.grace_seconds:
                self._expire_grace(name, tracker)
            problem = await probe(conn, tracker.config.timeout_seconds)
            if problem is None:
                self.success(name, "probe")
            else:
                self.failure(name, problem)

    def _wait(self, tracker: Tracker) -> float:
        interval = tracker.config.interval_seconds
        if tracker.state == UNHEALTHY:
            left = tracker.config.grace_seconds - (self._clock.now() - tracker.since)
            return max(0.0, min(interval, left))
        return interval


async def probe(conn: ServerPool, timeout: float) -> str | None:  # noqa: ASYNC109 - the probe's own bound
    """Probe `conn` once: None when it is healthy, else what is wrong."""
    if conn.state is not State.READY or conn.negotiated is None:
        return f"not connected: {conn.last_error or conn.state.value}"
    if isinstance(conn.config, StdioServerConfig):
        pid = conn.pid()
        if pid is None or not _alive(pid):
            return "the server process is not running"
    method = "ping" if conn.negotiated.era == "handshake" else "server/discover"
    try:
        async with asyncio.timeout(timeout):
            await conn.call(method, None)
    except TimeoutError:
        return f"no answer to {method} within {timeout:g}s"
    except UpstreamError as exc:
        return exc.cause
    except UpstreamRpcError as exc:
        return f"{method} answered an error: {exc.error.get('message')}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
