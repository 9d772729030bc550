"""The Redis state backend against a real Redis: hashes, ordered announcements, prefixes, and
what a gateway does when Redis goes away and comes back (through a link the test cuts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from toolway.clock import MonotonicClock
from toolway.config.state import StateConfig
from toolway.observability.events import Events
from toolway.state.backend import StateUnavailable
from toolway.state.events import KeysChanged, ServerChanged, StateLost, StateSynced, TrafficSet
from toolway.state.redis_backend import RedisBackend, shown_url
from toolway.state.shared import SharedState
from toolway.testing.state import CuttableLink


@contextlib.asynccontextmanager
async def backend(url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    made = RedisBackend(url, prefix, timeout=5.0, keepalive=1.0)
    try:
        yield made
    finally:
        await made.close()


async def test_hashes_and_ordered_announcements(redis: tuple[str, str]) -> None:
    url, prefix = redis
    async with backend(url, prefix) as a, backend(url, prefix) as b, backend(url, prefix + "-other") as other:
        assert await a.read("traffic") == {}
        async with b.subscribe() as subscription, other.subscribe() as elsewhere:
            await a.write("traffic", {"kill/server/x": "1", "weights/x": '{"v1": 5}'}, ("gw-a", TrafficSet("f", "1")))
            await a.write("traffic", {"kill/server/x": None}, ("gw-a", TrafficSet("f", None)))
            await a.publish(("gw-a", KeysChanged()))
            assert await subscription.next() == ("gw-a", TrafficSet("f", "1"))
            assert await subscription.next() == ("gw-a", TrafficSet("f", None))
            assert await subscription.next() == ("gw-a", KeysChanged())
            assert await b.read("traffic") == {"weights/x": '{"v1": 5}'}
            # Another prefix is another deployment: it sees neither the hash nor the events.
            assert await other.read("traffic") == {}
            await other.publish(("gw-o", ServerChanged("mine")))
            assert await elsewhere.next() == ("gw-o", ServerChanged("mine"))


async def test_a_malformed_message_on_the_channel_is_skipped(redis: tuple[str, str]) -> None:
    url, prefix = redis
    raw = Redis.from_url(url)
    try:
        async with backend(url, prefix) as b, b.subscribe() as subscription:
            await raw.publish(f"{prefix}:changes", b"{not json")
            await raw.publish(f"{prefix}:changes", b'{"v": 1, "type": "reboot", "origin": "x", "data": {}}')
            await b.publish(("gw-a", ServerChanged("dyn")))
            assert await subscription.next() == ("gw-a", ServerChanged("dyn"))
    finally:
        await raw.aclose()


async def test_an_unreachable_redis_is_named_in_the_error(redis: tuple[str, str]) -> None:
    url, prefix = redis
    async with CuttableLink(url) as link:
        await link.cut()  # a port that refuses connections
        async with backend(link.url, prefix) as dead:
            with pytest.raises(StateUnavailable, match=f"cannot read 'traffic' from {link.url}"):
                await dead.read("traffic")
            with pytest.raises(StateUnavailable, match="cannot subscribe"):
                async with dead.subscribe():
                    pass
            with pytest.raises(StateUnavailable, match="cannot write"):
                await dead.write("traffic", {"a": "1"}, ("gw", TrafficSet("a", "1")))
    assert shown_url("redis://user:secret@host:6380/1") == "redis://user:***@host:6380/1"


async def test_a_gateway_cut_off_from_redis_catches_up_and_sends_what_it_kept(redis: tuple[str, str]) -> None:
    url, prefix = redis
    config = StateConfig(backend="redis", url=url, prefix=prefix, reconnect={"initial": 0.05, "max": 0.2})
    async with CuttableLink(url) as link, backend(url, prefix) as direct, direct.subscribe() as watcher:
        events = Events()
        lost: asyncio.Queue[StateLost] = asyncio.Queue()
        synced: asyncio.Queue[StateSynced] = asyncio.Queue()
        events.subscribe(StateLost, lost.put_nowait)
        events.subscribe(StateSynced, synced.put_nowait)
        cut_off = SharedState(config.model_copy(update={"url": link.url}), MonotonicClock(), events=events)
        seen: list[dict[str, str]] = []

        async def reread() -> None:
            seen.append(await cut_off.read("traffic"))

        cut_off.on_resync(reread)
        async with cut_off:
            assert (await asyncio.wait_for(synced.get(), 5)).resumed is False
            await link.cut()
            assert "lost the subscription" in (await asyncio.wait_for(lost.get(), 10)).reason
            assert cut_off.lost.is_set() and not cut_off.synced.is_set()
            # While it is away: another replica changes the shared state ...
            await direct.write("traffic", {"kill/server/x": "1"}, ("gw-b", TrafficSet("kill/server/x", "1")))
            assert await watcher.next() == ("gw-b", TrafficSet("kill/server/x", "1"))
            # ... and this one has something to announce, which it keeps.
            await cut_off.announce(ServerChanged("dyn"))
            await link.restore()
            assert (await asyncio.wait_for(synced.get(), 10)).resumed is True
            assert seen[-1] == {"kill/server/x": "1"}  # re-read after it came back: nothing missed
            assert await asyncio.wait_for(watcher.next(), 5) == (cut_off.origin, ServerChanged("dyn"))
