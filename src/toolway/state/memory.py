"""The embedded state backend: hashes and the change channel in this process's memory.

The default. One gateway gets the same behaviour as with Redis (its own events come back
to it and are skipped by origin); several gateways in one process (tests, embedding)
share state by sharing one `MemoryBackend`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from toolway.state.backend import Announcement, StateUnavailable, Subscription


class _MemorySubscription:
    def __init__(self, queue: asyncio.Queue[Announcement | None]) -> None:
        self._queue = queue

    async def next(self) -> Announcement:
        item = await self._queue.get()
        if item is None:
            raise StateUnavailable("the memory state backend was closed")
        return item


class MemoryBackend:
    """Hashes in a dict, the change channel as one queue per subscriber."""

    name = "memory"

    def __init__(self) -> None:
        self._hashes: dict[str, dict[str, str]] = {}
        # Unbounded: changes are operator actions (a handful a minute) and every subscriber
        # is a loop in this process that takes them at once.
        self._subscribers: set[asyncio.Queue[Announcement | None]] = set()
        self._closed = False

    async def read(self, key: str) -> dict[str, str]:
        self._check()
        return dict(self._hashes.get(key, {}))

    async def write(self, key: str, changes: Mapping[str, str | None], announce: Announcement | None = None) -> None:
        self._check()
        fields = self._hashes.setdefault(key, {})
        for field, value in changes.items():
            if value is None:
                fields.pop(field, None)
            else:
                fields[field] = value
        if announce is not None:
            self._deliver(announce)

    async def publish(self, announce: Announcement) -> None:
        self._check()
        self._deliver(announce)

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription()

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[Subscription]:
        self._check()
        queue: asyncio.Queue[Announcement | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield _MemorySubscription(queue)
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        self._closed = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    def _deliver(self, announce: Announcement) -> None:
        for queue in self._subscribers:
            queue.put_nowait(announce)

    def _check(self) -> None:
        if self._closed:
            raise StateUnavailable("the memory state backend is closed")
