"""The scale-out state backend: Redis, through `redis.asyncio` (redis-py).

Keys are `<prefix>:<name>` hashes; change events go over the pub/sub channel
`<prefix>:changes`. A write and its announcement are one MULTI/EXEC transaction, so
subscribers see announcements in the order of the writes.

Two clients: one for commands (bounded by `timeout`, one retry on a fresh connection,
since a pooled connection may have been closed while idle) and one for the subscription,
which never retries by itself: a subscription that dropped may have missed events, and
only the caller (`state/shared.py`) knows to re-read the shared state after it resubscribes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from toolway.state.backend import Announcement, StateUnavailable, Subscription
from toolway.state.events import BadEvent, decode, encode

log = structlog.get_logger("toolway.state")


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _RedisSubscription:
    """Reads the channel; pings when it is quiet, so a dead connection is noticed, not waited on."""

    def __init__(self, backend: RedisBackend, pubsub: PubSub, keepalive: float) -> None:
        self._backend = backend
        self._pubsub = pubsub
        self._keepalive = keepalive

    async def next(self) -> Announcement:
        unanswered = False
        while True:
            try:
                message: dict[str, Any] | None = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._keepalive
                )
                if message is None:
                    if unanswered:  # two quiet intervals and no PONG: the link is dead
                        raise StateUnavailable(f"{self._backend.name} did not answer a PING")
                    await self._pubsub.ping()
                    unanswered = True
                    continue
            except (RedisError, OSError) as exc:
                raise StateUnavailable(f"lost the subscription to {self._backend.name}: {_reason(exc)}") from None
            unanswered = False
            if message.get("type") != "message":
                continue  # a PONG
            try:
                return decode(message["data"])
            except BadEvent as exc:
                log.warning("ignored a malformed change event", backend=self._backend.name, error=str(exc))


class RedisBackend:
    """Hashes and pub/sub in one Redis database, every name under `prefix`."""

    def __init__(self, url: str, prefix: str, *, timeout: float = 5.0, keepalive: float = 5.0) -> None:
        self.name = shown_url(url)
        self._prefix = prefix
        self._channel = f"{prefix}:changes"
        self._keepalive = keepalive
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
            "client_name": f"toolway:{prefix}",  # so an operator can tell them in CLIENT LIST
        }
        self._commands: Redis = Redis.from_url(url, socket_timeout=timeout, retry=Retry(NoBackoff(), 1), **common)
        self._listener: Redis = Redis.from_url(url, socket_timeout=timeout, retry=Retry(NoBackoff(), 0), **common)

    def key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    async def read(self, key: str) -> dict[str, str]:
        try:
            raw = await self._commands.hgetall(self.key(key))
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"cannot read {key!r} from {self.name}: {_reason(exc)}") from None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def write(self, key: str, changes: Mapping[str, str | None], announce: Announcement | None = None) -> None:
        pipe = self._commands.pipeline(transaction=True)
        for field, value in changes.items():
            if value is None:
                pipe.hdel(self.key(key), field)
            else:
                pipe.hset(self.key(key), field, value)
        if announce is not None:
            pipe.publish(self._channel, encode(*announce))
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"cannot write {key!r} to {self.name}: {_reason(exc)}") from None
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]

    async def publish(self, announce: Announcement) -> None:
        try:
            await self._commands.publish(self._channel, encode(*announce))
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"cannot publish to {self.name}: {_reason(exc)}") from None

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription()

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[Subscription]:
        pubsub = self._listener.pubsub()
        try:
            try:
                await pubsub.subscribe(self._channel)
            except (RedisError, OSError) as exc:
                raise StateUnavailable(f"cannot subscribe to {self.name}: {_reason(exc)}") from None
            yield _RedisSubscription(self, pubsub, self._keepalive)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError) as exc:
                log.debug("closing a dead subscription failed", error=_reason(exc))

    async def close(self) -> None:
        await self._commands.aclose()
        await self._listener.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
