"""The connection manager: every upstream server's pool of replica connections, owned by one task group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import aiohttp

from toolway.clock import Clock, MonotonicClock
from toolway.config.model import GatewayConfig, HttpServerConfig, StdioServerConfig
from toolway.observability.events import Events
from toolway.policy.egress import Egress, EgressResolver
from toolway.sessions.pool import ServerPool
from toolway.sessions.upstream import State
from toolway.upstream.channel import NO_AUTH
from toolway.upstream.credentials import Credentials
from toolway.upstream.http import new_client_session
from toolway.upstream.tls import client_context

Listener = Callable[[ServerPool], None]
NotificationListener = Callable[[ServerPool, dict[str, Any]], None]


class ConnectionManager:
    """Owns the pooled HTTP client, one `ServerPool` per enabled server, and their tasks.

    Every replica of every pool has its own supervisor task (connect, keep, reconnect),
    started with the manager, so pools are warm before the first call.
    `generation` increases whenever any server's state or catalog changes, so views
    built from the catalogs know when to rebuild.
    """

    def __init__(self, config: GatewayConfig, *, clock: Clock | None = None, events: Events | None = None) -> None:
        """Raises: CredentialsError when a server's secret cannot be read."""
        self._config = config
        self._clock = clock or MonotonicClock()
        self._events = events
        self.egress = Egress(config.egress)
        self._http: aiohttp.ClientSession | None = None
        # Each server's own credentials, secrets read now (start-up), tokens fetched when first needed.
        self.credentials = {
            s.name: Credentials(s.name, s.credentials, self._client, self._clock)
            for s in config.servers
            if isinstance(s, HttpServerConfig) and s.credentials is not None and s.enabled
        }
        self._own_pools: list[aiohttp.ClientSession] = []
        self._resolver: EgressResolver | None = None
        self._group: asyncio.TaskGroup | None = None
        self._supervisors: list[asyncio.Task[None]] = []
        self._listeners: list[Listener] = []
        self._notification_listeners: list[NotificationListener] = []
        self.pools: dict[str, ServerPool] = {}
        self.generation = 0
        # Built now, so a bad certificate file stops start-up with its name (UpstreamTlsError).
        self._tls = {
            s.name: client_context(s.name, s.tls)
            for s in config.servers
            if isinstance(s, HttpServerConfig) and s.tls is not None
        }

    @property
    def connections(self) -> dict[str, ServerPool]:
        """The servers by name (each a pool); the name components used before pools existed."""
        return self.pools

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def on_notification(self, listener: NotificationListener) -> None:
        """Call `listener` with every session-level notification a server sends."""
        self._notification_listeners.append(listener)

    def get(self, name: str) -> ServerPool | None:
        return self.pools.get(name)

    def ready(self) -> list[ServerPool]:
        """Servers with a connected replica, in config order (which decides name collisions)."""
        return [p for p in self.pools.values() if p.state is State.READY]

    async def __aenter__(self) -> ConnectionManager:
        self._resolver = self.egress.resolver()  # ours to close: aiohttp closes only resolvers it made
        self._http = new_client_session(resolver=self._resolver)
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        for server in self._config.servers:
            if server.enabled:
                self._start(server)
        return self

    def _start(self, server: StdioServerConfig | HttpServerConfig) -> ServerPool:
        """Build a server's pool and start one supervisor per replica (warm: they connect now)."""
        assert self._http is not None and self._group is not None
        http = self._http
        tls = self._tls.get(server.name)
        if tls is not None:  # A client certificate is per server: its own pool (upstream/tls.py).
            http = new_client_session(tls, resolver=self._resolver)
            self._own_pools.append(http)
        creds = self.credentials.get(server.name)
        auth = creds if creds is not None else NO_AUTH  # one server's credentials serve all its replicas
        pool = ServerPool(server, http, self._clock, self._changed, self._notified, self._events, auth)
        self.pools[server.name] = pool
        for replica in pool.replicas:
            name = f"supervise-{server.name}-{replica.id}"
            self._supervisors.append(self._group.create_task(replica.conn.supervise(self.spawn), name=name))
        return pool

    async def wait_settled(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline API
        """Wait (bounded) until every server's first connect attempt has finished."""
        waits = [c._settled.wait() for pool in self.pools.values() for c in pool.connections()]
        if waits:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*waits)

    def _client(self) -> aiohttp.ClientSession:
        assert self._http is not None, "the manager is not running"
        return self._http

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short background job owned by the manager's task group."""
        if self._group is None:
            coro.close()
            return
        self._group.create_task(coro)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Supervisors close their clients (and stop their processes) as they unwind.
        for task in self._supervisors:
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)
        if self._http is not None:
            await self._http.close()
        for pool in self._own_pools:
            await pool.close()
        self._own_pools.clear()
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()

    def _notified(self, pool: ServerPool, msg: dict[str, Any]) -> None:
        for listener in self._notification_listeners:
            listener(pool, msg)

    def _changed(self, pool: ServerPool) -> None:
        self.generation += 1
        for listener in self._listeners:
            listener(pool)
