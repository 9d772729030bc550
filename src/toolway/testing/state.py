"""Shared state for tests: a Redis key prefix of the test's own, and a link to Redis you can cut.

    async with redis_prefix() as (url, prefix):
        state = {"backend": "redis", "url": url, "prefix": prefix}
        async with running_gateway(..., state=state) as a, running_gateway(..., state=state) as b: ...

    async with CuttableLink(url) as link:       # a Redis-speaking socket on 127.0.0.1:<port>
        ... {"url": link.url} ...
        await link.cut()                        # every connection through it drops; new ones are refused
        await link.restore()                    # it listens again, on the same port

The Redis server is ``TOOLWAY_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``). One that
cannot be reached is an error, never a skip: a suite that claims to pass on Redis must
have run there. Every key under the prefix is deleted on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["CuttableLink", "RedisUnavailable", "redis_prefix", "redis_url"]

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class RedisUnavailable(RuntimeError):
    """The test Redis server cannot be reached; the message says where it was looked for."""


def redis_url() -> str:
    return os.environ.get("TOOLWAY_TEST_REDIS", DEFAULT_REDIS)


@contextlib.asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    """(Redis URL, a fresh key prefix); the prefix's keys are deleted afterwards.

    Raises:
        RedisUnavailable: the server does not answer a PING.
    """
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    url = redis_url()
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(
                f"Redis is not reachable at {url} ({exc}); the state tests need it "
                "(set TOOLWAY_TEST_REDIS to another server)"
            ) from None
        prefix = f"toolway-test-{uuid.uuid4().hex[:12]}"
        try:
            yield url, prefix
        finally:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


class CuttableLink:
    """A TCP relay on 127.0.0.1 to the server of `url`: `url` through it, `cut` and `restore` it."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._parts = parts
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self.port = 0
        self.url = ""
        self.connections = 0  # accepted since the start: tests see a client come back

    async def __aenter__(self) -> CuttableLink:
        await self._listen()
        netloc = self._parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        self.url = urlunsplit(self._parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.cut()

    async def cut(self) -> None:
        """Stop listening and drop every connection (as if the server went away)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        if server is not None:
            await server.wait_closed()  # after the links: from 3.12 it waits for them

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            self._links.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._links.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
