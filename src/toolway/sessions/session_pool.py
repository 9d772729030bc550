"""One replica's pool of upstream sessions: limits, warm sessions, idle close, principal isolation.

The pool always holds the replica's own gateway session (its supervisor reconnects it; the
catalog, subscriptions and keep-alive use it). Callers borrow a session for one call:

1. the least-loaded session of the caller's group with room (`max_inflight`), connected first;
2. else a warm spare nobody has used yet, which now belongs to the caller's group;
3. else a new session, while the replica has fewer than `max_connections`;
4. else the longest-idle session of another principal is closed to make room;
5. else the call waits, in FIFO order and within its deadline, when `max_waiting` allows,
   or fails at once with the retryable `no_healthy_replica` (the replica is full).

A group is one principal (`sharing: per_principal`: their sessions, for stdio their processes,
serve nobody else) or everyone (`shared`, and callers without an identity, which may also use the
gateway's session). Every borrowed slot is given back in a `finally`; a failed dial, a cancelled
call and a session that dies mid-call all free it, and each freed slot goes to the next waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolway.auth.identity import Identity, session_principal
from toolway.clock import Clock
from toolway.config.routing import PoolLimits, Sharing
from toolway.observability.events import (
    Events,
    PoolSaturated,
    PoolWaited,
    UpstreamSessionClosed,
    UpstreamSessionOpened,
)
from toolway.protocol.errors import NoHealthyReplica
from toolway.sessions.upstream import State, UpstreamConnection

# `max_connections` unset: one session where callers share (as before pools); room for this many
# principals at once where each has their own.
DEFAULT_ISOLATED_CONNECTIONS = 64

OnChange = Callable[[UpstreamConnection], None]
Opener = Callable[[OnChange], UpstreamConnection]


class Runner(Protocol):
    """Where the pool's background tasks live (the connection manager's task group)."""

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


@dataclass(eq=False, slots=True)
class PooledSession:
    """One upstream session in a pool, and who may use it."""

    conn: UpstreamConnection
    owner: str | None  # the principal group; None: shared (or the anonymous caller's)
    claimed: bool  # False: a warm spare nobody used yet (any group may claim it)
    reason: str  # why it was opened: "gateway", "warm" or "demand"
    load: int = 0  # slots reserved: calls in flight, or waiting for this session's dial
    idle_since: float = 0.0
    connected: bool = False  # it connected once (a session that never did failed its dial)
    closing: str | None = None  # why the pool is closing it
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def gateway(self) -> bool:
        return self.reason == "gateway"


@dataclass(eq=False, slots=True)
class _Waiter:
    key: str | None
    future: asyncio.Future[PooledSession]


class SessionPool:
    """The upstream sessions of one replica (see the module docstring)."""

    def __init__(
        self,
        server: str,
        replica: str,
        gateway: UpstreamConnection,
        opener: Opener,
        limits: PoolLimits,
        sharing: Sharing,
        clock: Clock,
        events: Events | None = None,
    ) -> None:
        self.server, self.replica = server, replica
        self.gateway = gateway
        self._opener = opener
        self._limits = limits
        self._sharing = sharing
        self._stdio = gateway.config.transport == "stdio"
        self._clock = clock
        self._events = events
        self.sessions: list[PooledSession] = [PooledSession(gateway, None, True, "gateway", idle_since=clock.now())]
        self._by_conn: dict[int, PooledSession] = {}
        self._waiters: deque[_Waiter] = deque()
        self._runner: Runner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set while no slot is reserved (draining waits on it)
        self._idle.set()

    # --- who shares what ------------------------------------------------------------------------

    def isolated(self) -> bool:
        """Does each principal get sessions of its own? `auto`: for stdio and handshake-era upstreams."""
        if self._sharing == "auto":
            negotiated = self.gateway.negotiated
            return self._stdio or negotiated is None or negotiated.era == "handshake"
        return self._sharing == "per_principal"

    def key(self, identity: Identity | None) -> str | None:
        """The group a caller's call uses: its principal when isolated, else None (shared)."""
        return session_principal(identity) if identity is not None and self.isolated() else None

    def limit(self) -> int:
        configured = self._limits.max_connections
        if configured is not None:
            return configured
        return DEFAULT_ISOLATED_CONNECTIONS if self.isolated() else 1

    # --- counts (for balancing, admin and metrics) ----------------------------------------------

    @property
    def load(self) -> int:
        return sum(s.load for s in self.sessions)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def open_count(self) -> int:
        return len(self.sessions)

    def describe(self) -> dict[str, Any]:
        """What `GET /admin/traffic` shows of this pool (no principal names: counts only)."""
        connected = [s for s in self.sessions if s.conn.state is State.READY]
        return {
            "open": len(self.sessions),
            "connected": len(connected),
            "spare": sum(1 for s in self.sessions if not s.claimed),
            "principals": len({s.owner for s in self.sessions if s.claimed and s.owner is not None}),
            "waiting": len(self._waiters),
            "max_connections": self.limit(),
            "sharing": "per_principal" if self.isolated() else "shared",
        }

    def has_room(self, key: str | None = None) -> bool:
        """Could a call of group `key` get a slot now, without waiting?"""
        return self._plan(key) is not None

    def may_wait(self) -> bool:
        return len(self._waiters) < self._limits.max_waiting

    # --- borrowing ------------------------------------------------------------------------------

    async def acquire(self, key: str | None, timeout: float) -> PooledSession:  # noqa: ASYNC109 - the call's budget
        """A slot on a session of group `key`; give it back with `release`.

        Raises:
            UpstreamUnavailable: the replica is down (its gateway session is not connected).
            NoHealthyReplica: the replica is full and the call may not wait, or its wait ran
                past `timeout` seconds (or `max_wait_seconds`), retryable.
        """
        await self.gateway.wait_ready()  # start-up: a first connect under way; down: its own error
        session = self._take(key)
        if session is not None:
            return session
        bound = self._limits.max_wait_seconds
        timeout = timeout if bound is None else min(timeout, bound)
        waits = self.may_wait() and timeout > 0
        if self._events is not None:
            self._events.emit(PoolSaturated(self.server, self.replica, key, len(self._waiters), waits))
        if not waits:
            raise NoHealthyReplica(self.server, f"replica {self.replica} is full ({self._full_detail()})")
        return await self._wait(key, timeout)

    async def _wait(self, key: str | None, timeout: float) -> PooledSession:  # noqa: ASYNC109
        future: asyncio.Future[PooledSession] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(key, future)
        self._waiters.append(waiter)
        started = self._clock.now()
        outcome = "cancelled"
        try:
            async with asyncio.timeout(timeout):
                session = await future
            outcome = "granted"
            return session
        except TimeoutError:
            outcome = "timeout"
            raise NoHealthyReplica(
                self.server, f"replica {self.replica} is full ({self._full_detail()}); no slot within {timeout:.3g}s"
            ) from None
        finally:
            if outcome != "granted":
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if future.done() and not future.cancelled() and future.exception() is None:
                    self.release(future.result())  # granted just as the caller gave up: give it back
                else:
                    future.cancel()
            if self._events is not None:
                self._events.emit(PoolWaited(self.server, self.replica, key, self._clock.now() - started, outcome))

    def release(self, session: PooledSession) -> None:
        """Give back a slot `acquire` returned (exactly once); the next waiter may take it."""
        session.load -= 1
        if session.load == 0:
            session.idle_since = self._clock.now()
        if not any(s.load for s in self.sessions):
            self._idle.set()
        self._wake()

    def _full_detail(self) -> str:
        per = self._limits.max_inflight
        room = f"{per} call(s) in flight each" if per is not None else "all in use"
        return f"{len(self.sessions)} of {self.limit()} sessions, {room}, {len(self._waiters)} waiting"

    def _plan(self, key: str | None) -> tuple[str, PooledSession | None] | None:
        """How a call of `key` would get a slot now: ("use", s), ("claim", s), ("open", None),
        ("evict", victim); None: it cannot."""
        best: PooledSession | None = None
        for s in self.sessions:
            if s.owner != key or not s.claimed or s.closing or not self._has_room(s):
                continue
            if s.conn.state is State.DOWN:  # lost, on its way out (or the replica is down)
                continue
            if best is None or _better(s, best):
                best = s
        if best is not None:
            return "use", best
        spare = next((s for s in self.sessions if not s.claimed and not s.closing), None)
        if spare is not None:
            return "claim", spare
        if len(self.sessions) < self.limit():
            return "open", None
        idle = [s for s in self.sessions if s.load == 0 and not s.gateway and s.owner != key and not s.closing]
        if idle:
            return "evict", min(idle, key=lambda s: s.idle_since)
        return None

    def _has_room(self, s: PooledSession) -> bool:
        per = self._limits.max_inflight
        return per is None or s.load < per

    def _take(self, key: str | None) -> PooledSession | None:
        """Reserve a slot for a call of `key` now (opening or claiming a session), or None."""
        plan = self._plan(key)
        if plan is None:
            return None
        how, session = plan
        if how == "evict":
            assert session is not None
            self._close(session, "evicted")
            session = self._open(key, "demand")
        elif how == "open":
            session = self._open(key, "demand")
        elif how == "claim":
            assert session is not None
            session.owner, session.claimed = key, True
        assert session is not None
        session.load += 1
        self._idle.clear()
        return session

    def _wake(self) -> None:
        """Give freed room to waiters, first come first served (a group that cannot be served
        does not hold up the waiters of another)."""
        blocked: set[str | None] = set()
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            if waiter.key in blocked:
                continue
            session = self._take(waiter.key)
            if session is None:
                blocked.add(waiter.key)
                continue
            self._waiters.remove(waiter)
            waiter.future.set_result(session)

    # --- sessions' lives ------------------------------------------------------------------------

    def start(self, runner: Runner) -> None:
        """Open the warm sessions (the gateway's own is the first) and start the idle reaper."""
        self._runner = runner
        for _ in range(self._limits.warm - 1):
            self._open(None, "warm")
        self._reaper = runner.start_task(self._reap_forever(), f"reap-{self.server}-{self.replica}")

    def _open(self, key: str | None, reason: str) -> PooledSession:
        assert self._runner is not None, "the pool is not started"
        conn = self._opener(self._changed)
        if self.gateway.effective_transport is not None:
            conn.follow(self.gateway)  # `transport: auto`: what the gateway's session found
        session = PooledSession(conn, key, reason != "warm", reason, idle_since=self._clock.now())
        self.sessions.append(session)
        self._by_conn[id(conn)] = session
        session.task = self._runner.start_task(self._run(session), f"session-{self.server}-{self.replica}")
        return session

    async def _run(self, session: PooledSession) -> None:
        assert self._runner is not None
        try:
            await session.conn.supervise(self._runner.spawn, once=True)
        finally:
            reason = session.closing or ("lost" if session.connected else "dial_failed")
            self._forget(session)
            if self._events is not None:
                owner = session.owner if session.claimed else None
                self._events.emit(UpstreamSessionClosed(self.server, self.replica, owner, reason))

    def _forget(self, session: PooledSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        self._by_conn.pop(id(session.conn), None)
        self._wake()  # room for one more session

    def _changed(self, conn: UpstreamConnection) -> None:
        session = self._by_conn.get(id(conn))
        if session is None or session.connected or conn.state is not State.READY:
            return
        session.connected = True
        if self._events is not None:
            owner = session.owner if session.claimed else None
            self._events.emit(UpstreamSessionOpened(self.server, self.replica, owner, session.reason))

    def _close(self, session: PooledSession, reason: str) -> None:
        """Close a session nobody is using: out of the pool now, its task ends it (DELETE, or
        the process stopped) in the background."""
        session.closing = reason
        if session in self.sessions:
            self.sessions.remove(session)
        if session.task is not None:
            session.task.cancel()

    def reap(self) -> None:
        """Close the sessions idle for `idle_seconds`, longest idle first, down to `warm`."""
        now, limit = self._clock.now(), self._limits.idle_seconds
        due = sorted(
            (s for s in self.sessions if not s.gateway and s.load == 0 and now - s.idle_since >= limit),
            key=lambda s: s.idle_since,
        )
        for session in due[: max(0, len(self.sessions) - self._limits.warm)]:
            self._close(session, "idle")

    def _next_reap(self) -> float:
        limit = self._limits.idle_seconds
        now = self._clock.now()
        candidates = [s.idle_since + limit - now for s in self.sessions if not s.gateway and s.load == 0]
        return max(min(candidates, default=limit), 0.001)

    async def _reap_forever(self) -> None:
        while True:
            await self._clock.sleep(self._next_reap())
            self.reap()

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound on the wait
        """Wait (up to `timeout` seconds) until no slot is reserved; False if some still are."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Close every session the pool opened (not the gateway's) and stop the reaper; waits."""
        tasks = [t for t in (self._reaper, *(s.task for s in self.sessions)) if t is not None]
        for session in list(self.sessions):
            if not session.gateway:
                self._close(session, "closed")
        if self._reaper is not None:
            self._reaper.cancel()
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(NoHealthyReplica(self.server, f"replica {self.replica} was removed"))
        if tasks:
            await asyncio.wait(tasks)


def _better(a: PooledSession, b: PooledSession) -> bool:
    """Connected before still dialing; then the fewest calls in flight."""
    a_ready, b_ready = a.conn.state is State.READY, b.conn.state is State.READY
    if a_ready != b_ready:
        return a_ready
    return a.load < b.load
