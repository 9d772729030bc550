"""The connection manager: every upstream server's connection, owned by one task group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import aiohttp

from toolway.clock import Clock, MonotonicClock
from toolway.config.model import GatewayConfig, HttpServerConfig
from toolway.policy.egress import Egress, EgressResolver
from toolway.sessions.upstream import State, UpstreamConnection
from toolway.upstream.channel import NO_AUTH
from toolway.upstream.credentials import Credentials
from toolway.upstream.http import new_client_session
from toolway.upstream.tls import client_context

Listener = Callable[[UpstreamConnection], None]
NotificationListener = Callable[[UpstreamConnection, dict[str, Any]], None]


class ConnectionManager:
    """Owns the pooled HTTP client, one `UpstreamConnection` per enabled server, and their tasks.

    `generation` increases whenever any server's state or catalog changes, so views
    built from the catalogs know when to rebuild.
    """

    def __init__(self, config: GatewayConfig, *, clock: Clock | None = None) -> None:
        """Raises: CredentialsError when a server's secret cannot be read."""
        self._config = config
        self._clock = clock or MonotonicClock()
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
        self.connections: dict[str, UpstreamConnection] = {}
        self.generation = 0
        # Built now, so a bad certificate file stops start-up with its name (UpstreamTlsError).
        self._tls = {
            s.name: client_context(s.name, s.tls)
            for s in config.servers
            if isinstance(s, HttpServerConfig) and s.tls is not None
        }

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def on_notification(self, listener: NotificationListener) -> None:
        """Call `listener` with every session-level notification a server sends."""
        self._notification_listeners.append(listener)

    def get(self, name: str) -> UpstreamConnection | None:
        return self.connections.get(name)

    def ready(self) -> list[UpstreamConnection]:
        """Connected servers, in config order (which decides name collisions)."""
        return [c for c in self.connections.values() if c.state is State.READY]

    async def __aenter__(self) -> ConnectionManager:
        self._resolver = self.egress.resolver()  # ours to close: aiohttp closes only resolvers it made
        self._http = new_client_session(resolver=self._resolver)
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        for server in self._config.servers:
            if not server.enabled:
                continue
            creds = self.credentials.get(server.name)
            http = self._http
            tls = self._tls.get(server.name)
            if tls is not None:  # A client certificate is per server: its own pool (upstream/tls.py).
                http = new_client_session(tls, resolver=self._resolver)
                self._own_pools.append(http)
            auth = creds if creds is not None else NO_AUTH
            conn = UpstreamConnection(server, http, self._clock, self._changed, self._notified, auth)
            self.connections[server.name] = conn
            task = self._group.create_task(conn.supervise(self.spawn), name=f"supervise-{server.name}")
            self._supervisors.append(task)
        return self

    async def wait_settled(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline API
        """Wait (bounded) until every server's first connect attempt has finished."""
        waits = [c._settled.wait() for c in self.connections.values()]
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

    def _notified(self, conn: UpstreamConnection, msg: dict[str, Any]) -> None:
        for listener in self._notification_listeners:
            listener(conn, msg)

    def _changed(self, conn: UpstreamConnection) -> None:
        self.generation += 1
        for listener in self._listeners:
            listener(conn)
