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
    started with the manager, so pools are warm before the first call. Servers come from
    the config at start-up, and are added, replaced and removed at run time by the
    registry (`add`, `replace`, `remove`).
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
        self._own_pools: dict[str, aiohttp.ClientSession] = {}  # per server: those with a client certificate
        self._resolver: EgressResolver | None = None
        self._group: asyncio.TaskGroup | None = None
        self._supervisors: dict[str, list[asyncio.Task[None]]] = {}  # per server, one per replica
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
            self._own_pools[server.name] = http
        creds = self.credentials.get(server.name)
        auth = creds if creds is not None else NO_AUTH  # one server's credentials serve all its replicas
        pool = ServerPool(server, http, self._clock, self._changed, self._notified, self._events, auth)
        self.pools[server.name] = pool
        self._supervisors[server.name] = [
            self._group.create_task(replica.conn.supervise(self.spawn), name=f"supervise-{server.name}-{replica.id}")
            for replica in pool.replicas
        ]
        for replica in pool.replicas:
            replica.sessions.start(self)  # its warm sessions connect now, beside the gateway's own
        return pool

    def add(self, server: StdioServerConfig | HttpServerConfig) -> ServerPool:
        """Start connecting to `server` at run time; calls route to it as soon as it is ready.

        Raises:
            ValueError: a server of that name is already connected.
            RuntimeError: the manager is not running.
            CredentialsError, UpstreamTlsError: its secret or certificate cannot be read.
        """
        if server.name in self.pools:
            raise ValueError(f"server {server.name!r} is already connected")
        if self._group is None or self._http is None:
            raise RuntimeError("the connection manager is not running")
        self.prepare(server)
        pool = self._start(server)
        self.generation += 1
        return pool

    def prepare(self, server: StdioServerConfig | HttpServerConfig) -> None:
        """Read what `__init__` reads for the file's servers (client certificate, secrets), for a
        server added at run time: called before it is registered, so a bad one is refused first.

        Raises:
            CredentialsError, UpstreamTlsError: naming the server and the file or secret.
        """
        if not isinstance(server, HttpServerConfig):
            return
        self._tls.pop(server.name, None)
        self.credentials.pop(server.name, None)
        if server.tls is not None:
            self._tls[server.name] = client_context(server.name, server.tls)
        if server.credentials is not None:
            self.credentials[server.name] = Credentials(server.name, server.credentials, self._client, self._clock)

    async def remove(self, name: str, drain_seconds: float) -> bool:
        """Stop routing new calls to `name`, wait (up to `drain_seconds`) for the calls in flight
        on its replicas, then close them (stdio children are stopped).

        Returns whether every call finished within the bound. Raises KeyError for an unknown name.
        """
        pool = self.pools.pop(name)  # New calls no longer find it.
        self.generation += 1
        deadline = asyncio.get_running_loop().time() + drain_seconds
        drained = True
        for replica in pool.replicas:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            drained = await replica.sessions.drained(left) and drained
        for replica in pool.replicas:
            await replica.sessions.close()
        tasks = self._supervisors.pop(name, [])
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # their `finally` closes the clients
        http = self._own_pools.pop(name, None)
        if http is not None:
            await http.close()
        return drained

    async def replace(self, server: StdioServerConfig | HttpServerConfig, drain_seconds: float) -> bool:
        """Swap the pool of `server.name` for one built from the new config (drained first)."""
        drained = await self.remove(server.name, drain_seconds) if server.name in self.pools else True
        self.add(server)
        return drained

    def bump(self) -> None:
        """Something that decides what is listed changed (health, pins): views rebuild."""
        self.generation += 1

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

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a long-lived task (a pool session, a reaper) in the manager's task group; the
        caller owns it (cancels it when done with it)."""
        assert self._group is not None, "the manager is not running"
        return self._group.create_task(coro, name=name)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short background job owned by the manager's task group."""
        if self._group is None:
            coro.close()
            return
        self._group.create_task(coro)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Pool sessions first (they wait for nothing), then supervisors, which close their
        # clients (and stop their processes) as they unwind.
        for server in self.pools.values():
            for replica in server.replicas:
                await replica.sessions.close()
        for tasks in self._supervisors.values():
            for task in tasks:
                task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)
        if self._http is not None:
            await self._http.close()
        for pool in self._own_pools.values():
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
