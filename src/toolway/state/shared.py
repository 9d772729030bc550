"""The gateway's link to the state backend: follow other replicas' changes, announce its own.

One component, owned with `async with`. Its task group runs one loop:

    subscribe -> re-read the shared state -> flush announcements that could not be sent
    -> apply each change event from another replica, in order
    -> (connection lost) log, serve from the local copy, back off, start again

Re-reading after every (re)subscription is what makes a lost connection lose nothing:
events missed while it was down are covered by the state read after it came back (and
the subscription exists before the read, so nothing falls in between).

Components register what they follow with `on(EventType, handler)` and how to rebuild
their copy with `on_resync(reader)`. Handlers and readers run in the loop, one at a
time; one that fails is logged and the loop goes on. No request waits on any of this.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog

from toolway.clock import Clock
from toolway.config.state import StateConfig
from toolway.observability.events import Events
from toolway.state.backend import StateBackend, StateUnavailable, open_backend
from toolway.state.events import ChangeApplied, ChangeEvent, StateLost, StateSynced

log = structlog.get_logger("toolway.state")

E = TypeVar("E", bound=ChangeEvent)
Resync = Callable[[], Awaitable[None]]


class SharedState:
    """Follows the change channel in its own task group; `write`, `read` and `announce` for components."""

    def __init__(
        self,
        config: StateConfig,
        clock: Clock,
        *,
        events: Events | None = None,
        backend: StateBackend | None = None,
        origin: str | None = None,
    ) -> None:
        """`backend`: one to share (tests, embedding), left open at exit; default: opened from `config`."""
        self.backend = backend if backend is not None else open_backend(config)
        self._owns_backend = backend is None
        self.origin = origin or secrets.token_hex(8)  # this gateway, in every event it sends
        self._clock = clock
        self._events = events
        self._timeout = config.timeout_seconds
        self._initial, self._max = config.reconnect.initial, config.reconnect.max
        self._handlers: dict[type, list[Callable[[Any], Awaitable[None]]]] = {}
        self._resyncs: list[Resync] = []
        self._outbox: list[ChangeEvent] = []  # announcements the backend refused: sent after it is back
        self._group: asyncio.TaskGroup | None = None
        self._follower: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()  # set while subscribed and up to date
        self.lost = asyncio.Event()  # set while the backend is unreachable (after the first sync)
        self._last_error = "no attempt yet"
        self._closed = False

    # -- registration (before `async with`) ---------------------------------------------------

    def on(self, kind: type[E], handler: Callable[[E], Awaitable[None]]) -> None:
        """Call `handler` with every `kind` event another replica announces."""
        self._handlers.setdefault(kind, []).append(handler)

    def on_resync(self, reader: Resync) -> None:
        """Call `reader` after every (re)subscription, to rebuild a local copy from the shared state.
        It may raise `StateUnavailable` (the loop reconnects); anything else is logged."""
        self._resyncs.append(reader)

    # -- what components call ---------------------------------------------------------------

    async def read(self, key: str) -> dict[str, str]:
        """A shared hash. Raises `StateUnavailable`."""
        return await self.backend.read(key)

    async def write(self, key: str, changes: Mapping[str, str | None], event: ChangeEvent) -> None:
        """Change a shared hash and announce it to the other replicas, atomically.

        Raises:
            StateUnavailable: nothing was written; the caller must not apply the change locally.
        """
        await self.backend.write(key, changes, (self.origin, event))

    async def announce(self, event: ChangeEvent) -> None:
        """Tell the other replicas about a change whose truth is elsewhere (the SQL store).

        Never raises: when the backend is away the event waits and is sent once it is back.
        """
        try:
            await self.backend.publish((self.origin, event))
        except StateUnavailable as exc:
            self._outbox.append(event)
            log.warning("cannot announce a change yet; it is sent when the state backend is back", error=str(exc))

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> SharedState:
        """Subscribe and read the shared state once, bounded by `state.timeout_seconds`.

        Raises:
            StateUnavailable: the backend could not be reached in time (the gateway must not
                start without the kill switches and weights the other replicas apply).
        """
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._follower = self._group.create_task(self._follow(), name="state-follower")
        try:
            async with asyncio.timeout(self._timeout):
                await self.synced.wait()
        except TimeoutError:
            await self.__aexit__(None, None, None)
            raise StateUnavailable(
                f"cannot reach the state backend {self.backend.name} within {self._timeout:g} s: {self._last_error}"
            ) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        group, self._group = self._group, None
        if group is not None:
            if self._follower is not None:
                self._follower.cancel()
            await group.__aexit__(None, None, None)
        if self._owns_backend and not self._closed:
            self._closed = True
            await self.backend.close()

    # -- the loop ---------------------------------------------------------------------------

    async def _follow(self) -> None:
        delay = self._initial
        first = True
        while True:
            try:
                async with self.backend.subscribe() as subscription:
                    await self._resync()
                    await self._flush()
                    resumed = self.lost.is_set()
                    self.lost.clear()
                    self.synced.set()
                    if resumed:
                        log.info("state backend reachable again; shared state re-read", backend=self.backend.name)
                    if self._events is not None:
                        self._events.emit(StateSynced(self.backend.name, resumed))
                    delay = self._initial
                    while True:
                        origin, event = await subscription.next()
                        if origin != self.origin:  # echo suppression: this gateway applied its own already
                            await self._apply(origin, event)
            except StateUnavailable as exc:
                self._last_error = str(exc)
                if self.synced.is_set() or first:
                    log.warning(
                        "state backend unreachable: serving from the local copy, reconnecting",
                        backend=self.backend.name,
                        error=str(exc),
                    )
                    if self._events is not None:
                        self._events.emit(StateLost(self.backend.name, str(exc)))
                else:
                    log.debug("state backend still unreachable", backend=self.backend.name, error=str(exc))
                if self.synced.is_set():
                    self.lost.set()
                self.synced.clear()
            first = False
            await self._clock.sleep(delay)
            delay = min(delay * 2, self._max)

    async def _resync(self) -> None:
        for reader in self._resyncs:
            try:
                await reader()
            except StateUnavailable:
                raise
            except Exception:
                log.exception("could not rebuild a local copy from the shared state", reader=_name(reader))

    async def _flush(self) -> None:
        while self._outbox:
            await self.backend.publish((self.origin, self._outbox[0]))  # StateUnavailable: kept for next time
            self._outbox.pop(0)

    async def _apply(self, origin: str, event: ChangeEvent) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                await handler(event)
            except Exception:
                log.exception("could not apply a change from another replica", change=repr(event), origin=origin)
        if self._events is not None:
            self._events.emit(ChangeApplied(event, origin))


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


__all__ = ["SharedState", "StateUnavailable"]


async def announce_once(config: StateConfig, event: ChangeEvent, origin: str = "cli") -> None:
    """Announce one change from outside a gateway (the CLI, after writing the store itself).

    Raises:
        StateUnavailable: the backend could not take it.
    """
    backend = open_backend(config)
    try:
        await backend.publish((origin, event))
    finally:
        await backend.close()
