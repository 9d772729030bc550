"""The registry at run time: which servers exist, and registering, changing and removing them.

Servers from the config file seed it at start-up (`managed_by: file`); servers
registered through the admin API are persisted (`managed_by: api`) and restored at the
next start. Changes take effect at once: a registered server is connected and routed to
as soon as its handshake is done; one removed, disabled or updated is drained first
(new calls are refused, calls in flight finish within `registry.drain_seconds`).

It also owns the registry's background work, in its own task group: health probes,
catalog refresh timers, and writing pins and health transitions to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from toolway.clock import Clock
from toolway.config.model import GatewayConfig, HttpServerConfig
from toolway.observability.events import Events
from toolway.protocol.errors import EgressDenied
from toolway.registry.catalog import EMPTY, ServerCatalog, catalog_diff
from toolway.registry.compat import compatibility
from toolway.registry.entries import (
    AnyServer,
    Conflict,
    NotFound,
    RegistryError,
    Unavailable,
    dump,
    redact,
    validate_server,
)
from toolway.registry.events import CatalogChanged, ServerEnabled, ServerRegistered, ServerRemoved
from toolway.registry.health import HealthMonitor
from toolway.registry.pinning import Pinning
from toolway.registry.records import HealthEvent, Pin, Registration, RegistryRecords
from toolway.registry.store import Store, StoreError
from toolway.sessions.manager import ConnectionManager
from toolway.sessions.pool import ServerPool
from toolway.sessions.upstream import State
from toolway.upstream.credentials import CredentialsError
from toolway.upstream.tls import UpstreamTlsError

log = structlog.get_logger("toolway.registry")

WRITE_WAIT_SECONDS = 10.0  # at shutdown, for pins and health transitions still queued


class Registry:
    """Every registered server, the health monitor and the pins. `async with` owns the background work."""

    def __init__(
        self,
        config: GatewayConfig,
        manager: ConnectionManager,
        events: Events,
        clock: Clock,
        *,
        lists_changed: Callable[[str], None] = lambda server: None,
        settled: Callable[[], Awaitable[None]] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._manager = manager
        self._events = events
        self._clock = clock
        self._lists_changed = lists_changed
        self._settled = settled
        self._drain = config.registry.drain_seconds
        self.entries: dict[str, Registration] = {}
        self._configs: dict[str, AnyServer] = {}
        self._restore: list[AnyServer] = []
        self._catalogs: dict[str, ServerCatalog] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._records: RegistryRecords | None = None
        self._store: Store | None = None
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._group: asyncio.TaskGroup | None = None
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one change at a time
        self._owned: set[asyncio.Task[None]] = set()
        self.pinning = Pinning(events, self._queue_pins, self._listing_changed)
        self.health = HealthMonitor(clock, events, now=now, record=self._queue_health, on_change=self._listing_changed)
        manager.subscribe(self._connection_changed)

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self, store: Store) -> None:
        """Read registrations and pins; seed the file's servers. Before the manager starts.

        Raises `StoreError`.
        """
        self._store, self._records = store, RegistryRecords(store)
        file_servers = {server.name: server for server in self._config.servers}
        for row in await self._records.registrations():
            if row.managed_by == "file":
                if row.name not in file_servers:
                    await self._records.delete_registration(row.name)  # gone from the file
                continue
            if row.name in file_servers:
                log.warning("a server registered through the API is shadowed by the config file", server=row.name)
                continue
            try:
                server = validate_server({**row.config, "enabled": row.enabled})
            except RegistryError as exc:
                log.error("a stored registration is not valid; skipped", server=row.name, error=exc.message)
                continue
            self.entries[row.name] = row
            self._configs[row.name] = server
            if server.enabled:
                self._restore.append(server)
        for server in self._config.servers:
            registration = Registration(server.name, "file", server.enabled, dump(server))
            self.entries[server.name], self._configs[server.name] = registration, server
            await self._records.save_registration(registration)
        self.pinning.load(await self._records.pins())

    def timeouts(self) -> list[float]:
        """Every enabled server's connect timeout (the gateway waits for first connects)."""
        return [c.timeouts.connect for c in self._configs.values() if c.enabled]

    async def __aenter__(self) -> Registry:
        """Start watching the manager's connections (after it started) and connect restored servers."""
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._writer = self._spawn(self._write_loop(), "registry-writer")
        for conn in list(self._manager.connections.values()):
            self._watch(conn)
        for server in self._restore:
            self._connect(server)
        self._restore = []
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        group, self._group = self._group, None
        if group is not None:
            writer = self._writer
            for task in list(self._owned):
                if task is not writer:
                    task.cancel()
            # The writer finishes what is queued (each job ends: store errors are logged), so
            # it is never cancelled halfway through a write; bounded, in case the store hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WRITE_WAIT_SECONDS):
                    await self._writes.join()
            if writer is not None:
                writer.cancel()
            await group.__aexit__(None, None, None)
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued (pins, health transitions) to the store."""
        while not self._writes.empty():
            await self._write(self._writes.get_nowait())

    async def settled(self) -> None:
        """Wait until queued writes are in the store (tests, the admin API)."""
        if self._group is None:
            await self.flush()
        else:
            await self._writes.join()

    # -- operations (the admin API) -----------------------------------------------------------

    def describe(self, name: str) -> dict[str, Any]:
        """One server as the admin API shows it. Raises `NotFound`."""
        registration = self.entries.get(name)
        if registration is None:
            raise NotFound(f"no server named {name!r} is registered")
        conn = self._manager.get(name)
        negotiated = conn.negotiated if conn is not None else None
        tracker = self.health.state(name)
        return {
            "name": name,
            "managed_by": registration.managed_by,
            "enabled": registration.enabled,
            "config": redact(registration.config),
            "state": conn.state.value if conn is not None else "disabled",
            "last_error": conn.last_error if conn is not None else None,
            "listed": conn is not None and self.listed(conn),
            "server_info": negotiated.server_info if negotiated is not None else None,
            "protocol_version": negotiated.protocol_version if negotiated is not None else None,
            "compatibility": compatibility(conn),
            "health": tracker.to_json(self._clock.now()) if tracker is not None else None,
            "tools": len(conn.catalog.get("tools/list")) if conn is not None else 0,
            "drifted_tools": sorted(tool for (server, tool) in self.pinning.drifts if server == name),
        }

    def names(self) -> list[str]:
        return sorted(self.entries)

    def config_of(self, name: str) -> AnyServer | None:
        return self._configs.get(name)

    async def register(self, body: Any) -> dict[str, Any]:
        """Register a new server (`managed_by: api`) and connect it if enabled.

        Raises `RegistryError` (bad body), `Conflict` (name taken), `Unavailable` (store).
        """
        server = validate_server(body)
        async with self._lock:
            if server.name in self.entries:
                raise Conflict(f"a server named {server.name!r} is already registered", "name")
            await self._admissible(server)
            registration = Registration(server.name, "api", server.enabled, dump(server))
            await self._save(registration)
            await self._install(registration, server, reconnect=False)
        self._events.emit(ServerRegistered(server.name, "api", replaced=False))
        return self.describe(server.name)

    async def update(self, name: str, body: Any, *, merge: bool = False) -> dict[str, Any]:
        """Replace (or, with `merge`, change some fields of) an API-managed server's config;
        a connected one is drained and reconnected with the new config."""
        if isinstance(body, dict) and body.get("name", name) != name:
            raise RegistryError(f"the body names {body.get('name')!r}, the path {name!r}", "name")
        async with self._lock:
            self._api_managed(name, "update")
            if merge and isinstance(body, dict):
                body = {**self.entries[name].config, **body}
            server = validate_server({**body, "name": name} if isinstance(body, dict) else body)
            await self._admissible(server)
            registration = Registration(name, "api", server.enabled, dump(server))
            await self._save(registration)
            await self._install(registration, server, reconnect=True)
        self._events.emit(ServerRegistered(name, "api", replaced=True))
        return self.describe(name)

    async def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        """Enable or disable a server. For a file-managed one this lasts until the next start."""
        async with self._lock:
            registration = self.entries.get(name)
            if registration is None:
                raise NotFound(f"no server named {name!r} is registered")
            server = self._configs[name].model_copy(update={"enabled": enabled})
            registration = Registration(name, registration.managed_by, enabled, registration.config)
            if registration.managed_by == "api":
                await self._save(registration)
            await self._install(registration, server, reconnect=False)
        self._events.emit(ServerEnabled(name, enabled))
        return self.describe(name)

    async def remove(self, name: str) -> dict[str, Any]:
        """Deregister an API-managed server: drain its calls, close it, forget it."""
        async with self._lock:
            self._api_managed(name, "remove")
            assert self._records is not None and self._store is not None
            try:
                await self._records.delete_registration(name)
            except StoreError as exc:
                raise Unavailable(str(exc)) from None
            drained = await self._uninstall(name)
            if self._settled is not None:
                await self._settled()  # the recorder's last snapshot of it is written before it is forgotten
            with contextlib.suppress(StoreError):
                await self._store.forget(name)
        self._events.emit(ServerRemoved(name, drained))
        return {"removed": name, "drained": drained}

    # -- following other replicas (state/registry.py) ------------------------------------------

    def follow(self, name: str | None, enabled: bool | None = None) -> None:
        """Another replica changed server `name` (None: any, after a resync): bring this one in
        line with the store, in the background, through the same steps the admin API takes here.
        `enabled`: a file-managed server switched at run time (not in the store)."""
        if self._group is not None:
            self._spawn(self._follow(name, enabled), f"follow-{name or 'all'}")

    async def reload_pins(self) -> None:
        """Re-read the pins after another replica approved a tool (`Pinning.adopt`). Raises `StoreError`."""
        assert self._records is not None
        self.pinning.adopt(await self._records.pins())

    async def _follow(self, name: str | None, enabled: bool | None) -> None:
        assert self._records is not None
        async with self._lock:  # read under the lock: a change made here meanwhile is in what is read
            try:
                stored = {row.name: row for row in await self._records.registrations()}
            except StoreError as exc:
                log.error("cannot read the registrations another replica changed", server=name, error=str(exc))
                return
            if name is not None:
                names = [name]
            else:
                ours = {n for n, r in self.entries.items() if r.managed_by == "api"}
                names = sorted(ours | {n for n, r in stored.items() if r.managed_by == "api"})
            for each in names:
                try:
                    await self._reconcile(each, stored.get(each), enabled if name is not None else None)
                except RegistryError as exc:
                    log.error("cannot apply another replica's change to a server", server=each, error=exc.message)
                except Exception:  # a background job: never tears down the registry's task group
                    log.exception("could not apply another replica's change to a server", server=each)

    async def _reconcile(self, name: str, row: Registration | None, enabled: bool | None) -> None:
        """Make the live entry of `name` what the store says (the lock is held)."""
        local = self.entries.get(name)
        if local is not None and local.managed_by == "file":  # the file wins; only run-time switches travel
            if enabled is not None and enabled != local.enabled:
                server = self._configs[name].model_copy(update={"enabled": enabled})
                await self._install(Registration(name, "file", enabled, local.config), server, reconnect=False)
                self._events.emit(ServerEnabled(name, enabled))
            return
        if row is None or row.managed_by != "api":
            if local is not None:
                self._events.emit(ServerRemoved(name, await self._uninstall(name)))
            return
        if local == row:
            return  # already applied (this replica's own change, or an event seen twice)
        server = validate_server({**row.config, "enabled": row.enabled})
        await self._admissible(server)
        replaced = local is not None and local.config != row.config
        await self._install(row, server, reconnect=replaced)
        if local is None or replaced:
            self._events.emit(ServerRegistered(name, "api", replaced=replaced))
        else:
            self._events.emit(ServerEnabled(name, row.enabled))

    def heartbeat(self, name: str) -> dict[str, Any]:
        """A remote server says it is alive: counts as a passed probe."""
        if name not in self.entries:
            raise NotFound(f"no server named {name!r} is registered")
        if not self.health.success(name, "heartbeat"):
            raise Conflict(f"server {name!r} is disabled: heartbeats count only for enabled servers")
        tracker = self.health.state(name)
        return {"server": name, "health": tracker.to_json(self._clock.now()) if tracker else None}

    async def health_history(self, name: str, limit: int) -> dict[str, Any]:
        assert self._records is not None
        await self.settled()
        try:
            events = await self._records.health_history(name, limit)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None
        if name not in self.entries and not events:
            raise NotFound(f"no server named {name!r} is registered or has a health history")
        tracker = self.health.state(name)
        return {
            "server": name,
            "current": tracker.to_json(self._clock.now()) if tracker else None,
            "history": [event.to_json() for event in events],
        }

    async def save_pin(self, pin: Pin) -> None:
        assert self._records is not None
        try:
            await self._records.save_pins([pin])
        except StoreError as exc:
            raise Unavailable(str(exc)) from None

    # -- what the router asks (in memory, per request) ---------------------------------------

    def listed(self, conn: ServerPool) -> bool:
        return self.health.listed(conn)

    def catalog_of(self, conn: ServerPool) -> ServerCatalog:
        """A connected server's catalog; a disconnected one's last (listed during its grace period)."""
        return conn.catalog if conn.state is State.READY else self._catalogs.get(conn.name, EMPTY)

    def tool_hidden(self, server: str, tool: str) -> bool:
        return self.pinning.hidden(server, tool)

    def check_tool(self, server: str, tool: str) -> None:
        self.pinning.check(server, tool)

    # -- internals ---------------------------------------------------------------------------

    def _api_managed(self, name: str, action: str) -> None:
        registration = self.entries.get(name)
        if registration is None:
            raise NotFound(f"no server named {name!r} is registered")
        if registration.managed_by != "api":
            raise Conflict(
                f"server {name!r} comes from the config file: {action} it there (enable/disable works at run time)"
            )

    async def _admissible(self, server: AnyServer) -> None:
        """What the gateway checks of the file's servers at start-up: egress rules, certificates
        and secrets. Raises `RegistryError` (400) naming the problem."""
        if isinstance(server, HttpServerConfig):
            for url in server.urls():
                try:
                    await self._manager.egress.check_upstream(url, unresolvable_ok=True)
                except EgressDenied as exc:
                    raise RegistryError(exc.message, "url" if server.endpoints is None else "endpoints") from None
        try:
            self._manager.prepare(server)
        except (CredentialsError, UpstreamTlsError) as exc:
            field = "tls" if isinstance(exc, UpstreamTlsError) else "credentials"
            raise RegistryError(str(exc), field) from None

    async def _save(self, registration: Registration) -> None:
        assert self._records is not None
        try:
            await self._records.save_registration(registration)
        except StoreError as exc:
            raise Unavailable(str(exc)) from None

    async def _install(self, registration: Registration, server: AnyServer, *, reconnect: bool) -> None:
        """Make `registration` the live entry: start, keep, restart (`reconnect`) or drain its pool."""
        name = registration.name
        self.entries[name], self._configs[name] = registration, server
        if reconnect and name in self._manager.connections:
            await self._disconnect(name)
        if server.enabled and name not in self._manager.connections:
            self._connect(server)
        elif not server.enabled and name in self._manager.connections:
            await self._disconnect(name)

    async def _uninstall(self, name: str) -> bool:
        """Drain and close a server's pool, and forget its entry. Returns whether its calls all finished."""
        drained = await self._disconnect(name) if name in self._manager.connections else True
        del self.entries[name], self._configs[name]
        return drained

    def _connect(self, server: AnyServer) -> None:
        self._watch(self._manager.add(server))

    def _watch(self, conn: ServerPool) -> None:
        if self._group is None:
            return
        self.health.watch(conn, lambda name, c: self._spawn(self.health.run(name, c), f"health-{name}"))
        seconds = conn.config.refresh_seconds or self._config.registry.refresh_seconds
        if seconds is not None:
            self._refreshers[conn.name] = self._spawn(self._refresh_loop(conn, seconds), f"refresh-{conn.name}")

    async def _disconnect(self, name: str) -> bool:
        self.health.unwatch(name)
        refresher = self._refreshers.pop(name, None)
        if refresher is not None:
            refresher.cancel()
        drained = await self._manager.remove(name, self._drain)
        if not drained:
            log.warning("server removed with calls still in flight", server=name, drain_seconds=self._drain)
        self._catalogs.pop(name, None)
        self._lists_changed(name)
        return drained

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        assert self._group is not None
        task = self._group.create_task(coro, name=name)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    async def _refresh_loop(self, conn: ServerPool, seconds: float) -> None:
        """Re-list a server's catalog on a timer, for servers that never say `list_changed`."""
        while True:
            await self._clock.sleep(seconds)
            if conn.state is State.READY:
                await conn.refresh_catalog()

    def _connection_changed(self, conn: ServerPool) -> None:
        """Manager listener: pin and diff a new catalog, feed health. Runs before any request sees it."""
        if self._manager.connections.get(conn.name) is not conn:
            return  # a connection being removed
        old = self._catalogs.get(conn.name)
        if conn.state is State.READY and conn.catalog is not old:
            self._catalogs[conn.name] = conn.catalog
            self.pinning.observe(conn.name, conn.config.pinning, conn.catalog.get("tools/list"))
            added, removed, changed = catalog_diff(old or EMPTY, conn.catalog)
            if added or removed or changed:
                self._events.emit(CatalogChanged(conn.name, added, removed, changed))
            if old is None:
                self._lists_changed(conn.name)  # new to clients of /mcp
        self.health.connection_changed(conn)

    def _listing_changed(self, server: str) -> None:
        """Health or pins changed what `server` lists: views rebuild, clients are told."""
        self._manager.bump()
        self._lists_changed(server)

    def _queue_pins(self, pins: list[Pin]) -> None:
        records = self._records
        if records is not None:
            self._writes.put_nowait(lambda: records.save_pins(pins))

    def _queue_health(self, event: HealthEvent) -> None:
        records = self._records
        if records is not None:
            self._writes.put_nowait(lambda: records.append_health([event]))

    async def _write_loop(self) -> None:
        while True:
            job = await self._writes.get()
            try:
                await self._write(job)
            finally:
                self._writes.task_done()

    async def _write(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except StoreError as exc:
            log.error("could not write registry state", error=str(exc))
