"""The state backend seam: what replicas of one deployment share, and how they hear of changes.

Two things, both small:

- a **hash store**: named hashes of string fields (traffic control keeps its kill switches,
  weights and drains in one), read whole and written field by field;
- a **change channel**: typed change events (`state/events.py`), published by one gateway
  and delivered to every subscribed gateway, its own included (it skips those by origin).

A write may carry the event that announces it; the backend applies both in one atomic
step, so every subscriber sees announcements in the order the writes happened.

Nothing here is on the request path: gateways keep their own copy in memory
(`state/shared.py`) and the backend is what they rebuild it from.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from toolway.config.state import StateConfig
from toolway.state.events import ChangeEvent

Announcement = tuple[str, ChangeEvent]  # (origin, event)


class StateUnavailable(Exception):
    """The state backend cannot be reached or did not answer in time; the message names it and says why.

    Never reaches an agent (the request path does not use the backend); the admin API answers 503.
    """


class Subscription(Protocol):
    """A live subscription to the change channel."""

    async def next(self) -> Announcement:
        """The next (origin, event), waiting as long as it takes.

        Raises:
            StateUnavailable: the connection was lost; events may have been missed since.
        """
        ...


class StateBackend(Protocol):
    """Where replicas keep the state they share. Every method raises `StateUnavailable`."""

    name: str  # for messages and logs ("memory", "redis://host:6379/0"), never with a password

    async def read(self, key: str) -> dict[str, str]:
        """Every field of the hash `key` (empty when there is none)."""
        ...

    async def write(self, key: str, changes: Mapping[str, str | None], announce: Announcement | None = None) -> None:
        """Set fields of the hash `key` (None deletes one) and publish `announce`, in one atomic step."""
        ...

    async def publish(self, announce: Announcement) -> None:
        """Publish a change event that comes with no write here (its truth is in the SQL store)."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to the change channel; entering raises `StateUnavailable` when it cannot."""
        ...

    async def close(self) -> None: ...


def open_backend(config: StateConfig) -> StateBackend:
    """The backend `config` names (not connected yet: the first use connects)."""
    if config.backend == "redis":
        from toolway.state.redis_backend import RedisBackend  # imported only when chosen

        return RedisBackend(config.url, config.prefix, timeout=config.timeout_seconds)
    from toolway.state.memory import MemoryBackend

    return MemoryBackend()
