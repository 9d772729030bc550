"""A server pool: the replicas of one logical server, their health accounting and draining.

A server is one URL (one replica), several `endpoints`, or a stdio command run as
`replicas: N` processes. Each replica has its own gateway session (an `UpstreamConnection`
with its own supervisor, back-off and keep-alive), a pool of upstream sessions that calls
borrow (`session_pool.py`: limits, warm sessions, principal isolation), its circuit breaker
and outlier tracker. The router picks among `Replica`s; everything else sees the pool as one
server (`state`, `negotiated`, `catalog` come from its first connected replica).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from toolway.auth.identity import Identity
from toolway.clock import Clock
from toolway.config.model import HttpServerConfig, StdioServerConfig
from toolway.observability.events import BreakerChanged, Events, ReplicaEjected, ReplicaStateChanged
from toolway.registry.catalog import EMPTY, ServerCatalog
from toolway.router.breaker import BreakerState, CircuitBreaker
from toolway.router.outlier import OutlierTracker
from toolway.sessions.session_pool import OnChange, SessionPool
from toolway.sessions.upstream import State, UpstreamConnection
from toolway.upstream.channel import NO_AUTH, UpstreamAuth
from toolway.upstream.client import Negotiated

ServerConfig = StdioServerConfig | HttpServerConfig


class Replica:
    """One replica of a server: its gateway session, session pool, breaker, outlier tracker and flags."""

    def __init__(
        self,
        pool: ServerPool,
        replica_id: str,
        conn: UpstreamConnection,
        sessions: SessionPool,
        *,
        weight: int = 1,
        zone: str | None = None,
        version: str = "v1",
    ) -> None:
        self.id = replica_id
        self.conn = conn  # the gateway's own session: catalog, subscriptions, health
        self.sessions = sessions  # what calls borrow (the gateway's session among them)
        self.weight = weight
        self.zone = zone
        self.version = version
        self.draining = False  # set by an operator: no new calls, calls in flight finish
        # Incremented each time the replica connects: a new upstream session, so any state
        # a client kept in the previous one is gone (affinity checks this).
        self.epoch = 0
        self.seen_state = conn.state  # the state last reported, so each change is an event once
        config, clock = pool.config, pool.clock
        server = pool.name

        def breaker_moved(old: BreakerState, new: BreakerState) -> None:
            if pool.events is not None:
                pool.events.emit(BreakerChanged(server, replica_id, old.value, new.value))

        def ejected(seconds: float, reason: str) -> None:
            if pool.events is not None:
                pool.events.emit(ReplicaEjected(server, replica_id, seconds, reason))

        self._clock = clock
        self.breaker = CircuitBreaker(config.breaker, clock, breaker_moved)
        self.outlier = OutlierTracker(config.outlier_detection, clock, pool.may_eject, ejected)

    @property
    def inflight(self) -> int:
        """Calls in flight on this replica's sessions (or waiting for one to connect)."""
        return self.sessions.load

    def full(self, key: str | None = None) -> bool:
        """No session of group `key` has room, and no other can be opened now."""
        return not self.sessions.has_room(key)

    def routable(self, key: str | None = None) -> bool:
        """May a new call go here? Connected, not draining, not ejected, breaker not open, not full."""
        return self.available() and not self.full(key)

    def available(self) -> bool:
        """Connected, not draining, not ejected, breaker not open (full or not)."""
        return (
            self.conn.state is State.READY
            and not self.draining
            and not self.outlier.ejected()
            and self.breaker.available()
        )

    def key(self, identity: Identity | None) -> str | None:
        """The session group of a caller with `identity` (see `SessionPool.key`)."""
        return self.sessions.key(identity)

    async def call(
        self,
        key: str | None,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float,  # noqa: ASYNC109 - what is left of the call's deadline
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Call on a session of group `key` borrowed from the pool (waiting for one counts
        against `timeout`); the slot is given back however the call ends.

        Raises: what `SessionPool.acquire` and `UpstreamConnection.call` raise.
        """
        started = self._clock.now()
        session = await self.sessions.acquire(key, timeout)
        try:
            left = timeout - (self._clock.now() - started)
            return await session.conn.call(method, params, timeout=left, **kwargs)
        finally:
            self.sessions.release(session)

    def health(self) -> str:
        """One word for operators: connecting, down, draining, ejected, open, half_open, full, healthy."""
        if self.conn.state is not State.READY:
            return "down" if self.conn.state is State.DOWN else "connecting"
        if self.draining:
            return "draining"
        if self.outlier.ejected():
            return "ejected"
        if self.breaker.state is not BreakerState.CLOSED:
            return str(self.breaker.state.value)
        return "full" if self.full() else "healthy"

    def describe(self) -> dict[str, Any]:
        """What `GET /admin/traffic` shows of this replica."""
        return {
            "id": self.id,
            "endpoint": self.conn.endpoint(),
            "version": self.version,
            "weight": self.weight,
            "zone": self.zone,
            "state": self.conn.state.value,
            "health": self.health(),
            "inflight": self.inflight,
            "sessions": self.sessions.describe(),
            "breaker": self.breaker.state.value,
            "ejected_seconds": round(self.outlier.ejected_for(), 3),
            "draining": self.draining,
            "last_error": self.conn.last_error,
        }


class ServerPool:
    """The replicas of one server, seen by the rest of the gateway as that one server."""

    def __init__(
        self,
        config: ServerConfig,
        http: aiohttp.ClientSession,
        clock: Clock,
        on_change: Callable[[ServerPool], None],
        on_notification: Callable[[ServerPool, dict[str, Any]], None] | None = None,
        events: Events | None = None,
        auth: UpstreamAuth = NO_AUTH,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.events = events
        self._on_change = on_change
        self._on_notification = on_notification
        self.replicas: list[Replica] = []
        for replica_id, replica_config, extra in _replica_configs(config):
            conn = UpstreamConnection(replica_config, http, clock, self._changed, self._notified, auth)
            opener = _opener(replica_config, http, clock, auth)
            sessions = SessionPool(self.name, replica_id, conn, opener, config.pool, config.sharing, clock, events)
            self.replicas.append(Replica(self, replica_id, conn, sessions, **extra))
        self._by_id = {r.id: r for r in self.replicas}
        self._by_conn = {id(r.conn): r for r in self.replicas}

    # --- the pool's own view ---------------------------------------------------------------------

    def replica(self, replica_id: str) -> Replica | None:
        return self._by_id.get(replica_id)

    def connections(self) -> Iterator[UpstreamConnection]:
        return (r.conn for r in self.replicas)

    def may_eject(self) -> bool:
        """Outlier detection may eject one more replica without passing `max_ejected_percent`."""
        allowed = math.floor(len(self.replicas) * self.config.outlier_detection.max_ejected_percent / 100)
        return sum(1 for r in self.replicas if r.outlier.ejected()) < allowed

    def drained(self, replica_id: str) -> bool:
        """A draining replica with no call in flight: it can be removed without losing work."""
        replica = self._by_id.get(replica_id)
        return replica is not None and replica.draining and replica.inflight == 0

    # --- the pool as one server (state, catalog, session-level calls) ---------------------------

    @property
    def primary(self) -> UpstreamConnection:
        """The first connected replica (else the first): the pool's catalog and session-level calls."""
        return next((r.conn for r in self.replicas if r.conn.state is State.READY), self.replicas[0].conn)

    @property
    def state(self) -> State:
        states = {r.conn.state for r in self.replicas}
        if State.READY in states:
            return State.READY
        return State.CONNECTING if State.CONNECTING in states else State.DOWN

    @property
    def last_error(self) -> str | None:
        return self.primary.last_error

    @property
    def negotiated(self) -> Negotiated | None:
        return self.primary.negotiated

    @property
    def catalog(self) -> ServerCatalog:
        conn = self.primary
        return conn.catalog if conn.state is State.READY else EMPTY

    @property
    def resource_subscriptions(self) -> set[str]:
        return self.primary.resource_subscriptions

    @property
    def forward_headers(self) -> tuple[str, ...]:
        return self.primary.forward_headers

    @property
    def effective_transport(self) -> str | None:
        return self.primary.effective_transport

    @property
    def inflight(self) -> int:
        return sum(r.inflight for r in self.replicas)

    def endpoint(self) -> str:
        return str(self.primary.endpoint())

    def pid(self) -> int | None:
        return self.primary.pid()

    async def refresh_catalog(self) -> None:
        await self.primary.refresh_catalog()

    async def update_subscriptions(self) -> None:
        await self.primary.update_subscriptions()

    async def call(self, method: str, params: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
        """A session-level call (subscriptions, log level) on the primary replica, not balanced."""
        return await self.primary.call(method, params, **kwargs)

    def _changed(self, conn: UpstreamConnection) -> None:
        replica = self._by_conn.get(id(conn))
        if replica is not None:
            if conn.state is State.READY and replica.seen_state is not State.READY:
                replica.epoch += 1  # a new upstream session: state kept in the old one is gone
            if replica.seen_state is not conn.state and self.events is not None:
                self.events.emit(ReplicaStateChanged(self.name, replica.id, conn.state.value, conn.last_error))
            replica.seen_state = conn.state
        self._on_change(self)

    def _notified(self, conn: UpstreamConnection, msg: dict[str, Any]) -> None:
        if self._on_notification is not None:
            self._on_notification(self, msg)


def _opener(
    config: ServerConfig, http: aiohttp.ClientSession, clock: Clock, auth: UpstreamAuth
) -> Callable[[OnChange], UpstreamConnection]:
    """How a replica's pool opens one more session: the replica's config and credentials."""
    keepalive = config.pool.keepalive

    def open_session(on_change: OnChange) -> UpstreamConnection:
        return UpstreamConnection(config, http, clock, on_change, None, auth, pooled=True, keepalive=keepalive)

    return open_session


def _replica_configs(config: ServerConfig) -> Iterator[tuple[str, ServerConfig, dict[str, Any]]]:
    """(id, the config one replica's connection uses, its balancing attributes) per replica."""
    if isinstance(config, StdioServerConfig):
        for index in range(config.replicas):
            yield str(index), config, {}
    elif config.endpoints is None:
        yield "0", config, {}
    else:
        for index, endpoint in enumerate(config.endpoints):
            one = config.model_copy(update={"url": endpoint.url, "endpoints": None})
            extra = {"weight": endpoint.weight, "zone": endpoint.zone, "version": endpoint.version}
            yield endpoint.id or str(index), one, extra
