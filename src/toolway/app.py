"""Composition root: config -> components -> ASGI apps, wired once in `Gateway`.

`async with Gateway(...)` starts the store, the connection manager (first connect attempts,
bounded) and the background work, and on exit closes them in order: close upstreams (stdio
children get SIGTERM, then SIGKILL) -> flush the registry and close the store. Listeners,
signals and the `serve`/`stdio` entry points are the process's business: `toolway.lifetime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from toolway.admin.app import AdminApp
from toolway.admin.servers import RegistryApi
from toolway.admin.traffic import TrafficAdmin
from toolway.auth.identity import Identity
from toolway.auth.setup import AuthSetupError, GatewayAuth, admin_token
from toolway.clock import Clock, MonotonicClock, SystemWallClock, WallClock
from toolway.config.model import GatewayConfig, HttpServerConfig
from toolway.ingress.security import HostOriginCheck
from toolway.ingress.streamable_http import StreamableHttpIngress
from toolway.observability import access_log, metrics, stats
from toolway.observability.audit import AuditLog
from toolway.observability.events import Events
from toolway.observability.tracing import Tracing
from toolway.pipeline.chain import build_chain
from toolway.pipeline.policy import PolicyFilter
from toolway.policy.decision_log import DecisionLog
from toolway.policy.engine import PolicyEngine
from toolway.protocol.errors import EgressDenied
from toolway.protocol.layer import ProtocolLayer
from toolway.protocol.logging_levels import most_verbose
from toolway.protocol.mrtr import Parking
from toolway.registry.catalog import EMPTY
from toolway.registry.discovery import Discovery
from toolway.registry.recorder import RegistryRecorder
from toolway.registry.service import Registry
from toolway.registry.store import Store, StoreError
from toolway.router.affinity import Affinity
from toolway.router.cursors import CursorCodec
from toolway.router.dispatch import Dispatcher
from toolway.router.router import Router
from toolway.router.traffic import Traffic
from toolway.sessions.downstream import DownstreamSession, SessionTable
from toolway.sessions.hub import LIST_CHANGED, Hub
from toolway.sessions.manager import ConnectionManager
from toolway.state.backend import StateBackend, StateUnavailable
from toolway.state.keys import KeysFollower
from toolway.state.registry import RegistryFollower
from toolway.state.shared import SharedState
from toolway.state.traffic import SharedTraffic
from toolway.upstream.tls import UpstreamTlsError

log = structlog.get_logger("toolway")

_KNOWN_CAPABILITIES = ("tools", "prompts", "resources", "completions", "logging")
_LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")


class StartupError(Exception):
    """The gateway cannot start: the message says why (port in use, store unusable)."""


@dataclass(frozen=True)
class Endpoints:
    url: str  # the agent-facing MCP endpoint
    admin_url: str | None


class Gateway:
    """Every component, wired once. `async with` owns their lifetimes."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Clock | None = None,
        wall_clock: WallClock | None = None,
        state_backend: StateBackend | None = None,
    ) -> None:
        """`state_backend`: one shared with other gateways in this process (else `config.state`'s).

        Raises: ConfigError when a policy does not compile or a server's secret cannot be read."""
        self.config = config
        self.clock = clock or MonotonicClock()
        try:
            self.auth = GatewayAuth(config, self.clock)  # all off without an `auth` section
        except AuthSetupError as exc:
            raise StartupError(str(exc)) from None
        self.events = Events()
        try:
            self.manager = ConnectionManager(config, clock=self.clock, events=self.events)
        except UpstreamTlsError as exc:
            raise StartupError(str(exc)) from None
        self.policy = PolicyEngine(config.policy, clock=self.clock, wall_clock=wall_clock)
        self.decision_log = DecisionLog(config.policy)
        self.hub = Hub()
        # What replicas share (docs/state.md): kill switches, weights, drains, and change events.
        self.state = SharedState(config.state, self.clock, events=self.events, backend=state_backend)
        self.traffic = traffic = Traffic(self.events)
        traffic.on_listing = self._listing_changed  # killed servers and tools leave the lists
        access_log.install(self.events)
        self.tracing = Tracing(config.tracing)  # exporter "none": no spans, the chain is not wrapped
        self.tracing.install(self.events)
        self.audit = AuditLog(config.audit)
        self.audit.install(self.events)
        self.decision_log.install(self.events)
        self.router = Router(
            self.manager,
            self.hub,
            page_size=config.limits.page_size,
            cursors=CursorCodec(config.cursor_secret),
            events=self.events,
            dispatcher=Dispatcher(traffic, Affinity(config.limits.max_sessions), events=self.events, clock=self.clock),
            visible=self.auth.visible_lists(),
        )
        self.sessions = SessionTable(
            self.clock,
            max_sessions=config.limits.max_sessions,
            idle_seconds=config.limits.session_idle_seconds,
            on_end=self._session_ended,
        )
        self._tasks: asyncio.TaskGroup | None = None
        self._owned: set[asyncio.Task[None]] = set()
        self.parking = Parking(self.clock, self._spawn, config.streams.input_deadline_seconds)
        authorize = self.auth.authorize(
            self.router.resource_owner, lambda template: self.router.view().template_owner(template)
        )
        policy = PolicyFilter(self.policy, self.events, self.router.resource_owner) if self.policy.active else None
        self.layer = ProtocolLayer(
            # One server span around the chain.
            self.tracing.wrap(build_chain(self.router, self.events, authorize=authorize, policy=policy)),
            self.sessions,
            self.capabilities,
            self.hub,
            self.parking,
            subscribe_upstream=self.router.subscribe_upstream,
            on_log_level=self._log_level_changed,
            max_streams_per_session=config.limits.max_streams_per_session,
        )
        self.app = StreamableHttpIngress(
            self.layer,
            security=HostOriginCheck(config.security.allowed_hosts, config.security.allowed_origins),
            max_body_bytes=config.limits.max_body_bytes,
            server_names=self.manager.connections.keys(),  # live: the registry adds and removes servers
            spawn=self._spawn,
            keepalive_seconds=config.streams.keepalive_seconds,
            retry_ms=config.streams.retry_ms,
            max_queued=config.streams.max_queued_messages,
            auth=self.auth.ingress,
        )
        self.manager.on_notification(self._upstream_notification)
        self.accepting = False
        self.metrics = metrics.install(self)
        self.stats = stats.install(self.events, self.clock, self.metrics.labels.of_call)
        self.admin_app = AdminApp(
            self.manager,
            lambda: self.accepting,
            metrics=self.metrics,
            stats=self.stats,
            store_check=self.ping_store,
            min_healthy_upstreams=config.admin.min_healthy_upstreams,
        )
        self.admin_app.audit = self.audit if self.audit.enabled else None
        self.admin_app.traffic = TrafficAdmin(
            self.manager, self.router.dispatcher, SharedTraffic(traffic, self.manager, self.state)
        )
        self.admin_app.keys = self.auth.api_keys
        try:
            self.admin_app.token = admin_token(config)
        except AuthSetupError as exc:
            raise StartupError(str(exc)) from None
        self.admin_app.announce = self.state.announce
        if self.auth.api_keys is not None:
            KeysFollower(self.auth.api_keys, self.state)
        # The registry: run-time registration, health, pins, discovery (docs/registry.md).
        self.registry = Registry(
            config,
            self.manager,
            self.events,
            self.clock,
            lists_changed=self._lists_changed,
            settled=self.registry_settled,
            now=(wall_clock or SystemWallClock()).now,
        )
        self.router.registry = self.registry
        RegistryFollower(self.registry, self.state)
        self.agent_base_url = ""  # set once the agent listener is bound
        discovery = Discovery(self.registry, config.registry.namespace, self._discovery_base)
        discovery.visible = self._discoverable
        self.app.discovery = discovery
        self.admin_app.registry = RegistryApi(self.registry, discovery, self.state.announce)
        self._store: Store | None = None
        self._recorder: RegistryRecorder | None = None
        self._recorder_task: asyncio.Task[None] | None = None

    def _discoverable(self, identity: Identity | None, server: str) -> bool:
        """Discovery shows an agent the servers it may use: not switched off, and with authentication,
        inside its team with some scope that lets it use something there."""
        if self.traffic.server_hidden(server):
            return False
        authorizer = self.auth.authorizer
        if identity is None or authorizer is None:
            return True
        pool = self.manager.get(server)
        catalog = self.registry.catalog_of(pool) if pool is not None else EMPTY
        return authorizer.uses_server(identity, server, {m: catalog.get(m) for m in _LISTS})

    def capabilities(self, scope: str | None) -> dict[str, Any]:
        """What the gateway offers: everything it can route, or one server's own on its endpoint."""
        if scope is None:
            return {
                "tools": {"listChanged": True},
                "prompts": {"listChanged": True},
                "resources": {"subscribe": True, "listChanged": True},
                "completions": {},
                "logging": {},
            }
        conn = self.manager.get(scope)
        upstream = conn.negotiated.capabilities if conn is not None and conn.negotiated is not None else {}
        return {key: upstream[key] for key in _KNOWN_CAPABILITIES if isinstance(upstream.get(key), dict)}

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a job owned by the gateway (for ingress adapters outside this module)."""
        return self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a job owned by the gateway: cancelled and awaited at shutdown."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("the gateway is not running")
        task = self._tasks.create_task(coro)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    def _upstream_notification(self, conn: Any, message: dict[str, Any]) -> None:
        self.hub.publish(message, origin=conn.name)

    def _lists_changed(self, server: str) -> None:
        """A server joined or left the lists (registered, removed, hidden, a tool quarantined): tell clients."""
        for method in LIST_CHANGED:
            self.hub.publish({"jsonrpc": "2.0", "method": method}, origin=server)

    def _listing_changed(self, server: str) -> None:
        """A kill switch changed what `server` lists: views rebuild, clients are told."""
        self.manager.bump()
        self._lists_changed(server)

    def _discovery_base(self, scope: dict[str, Any], agent: bool) -> str:
        """The agent-facing base URL the discovery API names: configured, else the one the agent used
        (on the agent port), else the agent listener's own (on the admin port)."""
        if self.config.registry.public_url:
            return self.config.registry.public_url.rstrip("/")
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if agent and host:
            return f"{scope.get('scheme', 'http')}://{host}"
        return self.agent_base_url

    def _session_ended(self, session: DownstreamSession) -> None:
        released = self.hub.remove(session.id)
        self.router.dispatcher.forget_session(session.id)  # its replica pins (router/affinity.py)
        if self.layer.closing.is_set():
            return  # Shutting down: the upstream sessions end anyway.
        for uri in released:
            self._spawn(_quietly(functools.partial(self.router.subscribe_upstream, uri, False)))

    def _log_level_changed(self) -> None:
        """Handshake-era servers log at the most verbose level any session asked for; the gateway filters."""
        level = most_verbose([s.log_level for s in self.sessions.all() if s.log_level])
        if level is None:
            return
        for conn in self.manager.ready():
            negotiated = conn.negotiated
            if negotiated is not None and negotiated.era == "handshake" and "logging" in negotiated.capabilities:
                self._spawn(_quietly(functools.partial(conn.call, "logging/setLevel", {"level": level})))

    async def ping_store(self) -> None:
        """Readiness: a `SELECT 1` on the store. Raises StoreError when it does not answer or is not open."""
        if self._store is None:
            raise StoreError("the store is not open")
        await self._store.ping()

    async def registry_settled(self) -> None:
        """Wait until what the gateway learned about its servers so far is in the store."""
        if self._recorder is not None:
            await self._recorder.settled()

    def stop_streams(self) -> None:
        """Shutdown, first phase: end the long-lived streams, so draining waits only on calls."""
        self.layer.closing.set()
        for session in self.sessions.all():
            session.standalone.close()

    async def __aenter__(self) -> Gateway:
        try:
            for server in self.config.servers:  # egress control, before anything connects
                if isinstance(server, HttpServerConfig) and server.enabled:
                    for url in server.urls():  # every replica's
                        await self.manager.egress.check_upstream(url, unresolvable_ok=True)
        except EgressDenied as exc:
            raise StartupError(f"refusing to start: {exc.message}") from None
        try:
            self._store = await Store.open(self.config.store)
            await self.audit.start(self.config.store)
            await self.auth.start(self.config.store)
            await self.registry.open(self._store)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.decision_log.open()
        except OSError as exc:
            raise StartupError(f"cannot open the decision log {self.config.policy.decision_log}: {exc}") from None
        await self.policy.__aenter__()
        self._recorder = RegistryRecorder(self._store)
        self.manager.subscribe(self._recorder.on_change)
        self._recorder_task = asyncio.create_task(self._recorder.run(), name="registry-recorder")
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        reloads = self.auth.background()
        if reloads is not None:
            self._spawn(reloads)
        await self.manager.__aenter__()
        await self.registry.__aenter__()  # watches the file's servers, connects the restored ones
        connect = max(self.registry.timeouts(), default=0.0)
        await self.manager.wait_settled(connect + 1.0)
        try:  # last: applying the shared state (drains, registrations) needs pools and the registry
            await self.state.__aenter__()
        except StateUnavailable as exc:
            await self.__aexit__(None, None, None)
            raise StartupError(f"refusing to start: {exc}") from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.accepting = False
        await self.state.__aexit__(None, None, None)  # stop following other replicas first
        self.stop_streams()
        self.sessions.close_all()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            if self._owned:
                log.info("shutdown: cancelling calls still parked or running", count=len(self._owned))
            for task in list(self._owned):
                task.cancel()
            await tasks.__aexit__(None, None, None)
        await self.registry.__aexit__(None, None, None)  # probes and timers stop; pins and health are written
        log.info("shutdown: closing upstream connections")
        await self.manager.__aexit__(None, None, None)
        # Every call has finished, so every audit record is queued: write them all.
        log.info("shutdown: writing the audit log and the last spans")
        await self.audit.close()
        await self.policy.__aexit__(None, None, None)
        self.decision_log.close()
        await self.tracing.shutdown()
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder_task
        if self._recorder is not None:
            await self._recorder.flush()
        if self._store is not None:
            await self._store.close()
        await self.auth.close()


async def _quietly(start: Callable[[], Awaitable[Any]]) -> None:
    """A background call whose failure is logged, never raised into the task group."""
    try:
        await start()
    except Exception as exc:
        log.info("background call failed", error=str(exc))
