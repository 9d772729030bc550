"""The memory state backend: several gateways' components in one process, sharing one backend.

The same behaviour the Redis tests show across processes (tests/state/), at unit level:
a change made through one replica's `SharedTraffic` is applied by the others, never twice
by itself; a replica that starts later (or subscribes again) rebuilds its copy from the
shared hash; a change the backend cannot take is applied nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolway.auth.api_key import ApiKeys
from toolway.auth.key_store import KeyStore
from toolway.clock import MonotonicClock
from toolway.config.model import GatewayConfig
from toolway.config.state import StateConfig
from toolway.observability.events import Events, TrafficChanged
from toolway.protocol.errors import Killed
from toolway.registry.store import Store
from toolway.router.traffic import Traffic, TrafficError
from toolway.sessions.manager import ConnectionManager
from toolway.state.backend import StateUnavailable
from toolway.state.events import ChangeApplied, KeysChanged
from toolway.state.keys import KeysFollower
from toolway.state.memory import MemoryBackend
from toolway.state.shared import SharedState
from toolway.state.traffic import SharedTraffic

CONFIG = StateConfig(reconnect={"initial": 0.01, "max": 0.05})


@dataclass
class Replica:
    """What one gateway holds of the shared state: the link, its traffic copy and what it saw."""

    shared: SharedState
    control: SharedTraffic
    events: Events
    applied: asyncio.Queue[ChangeApplied]
    traffic_events: list[TrafficChanged]

    @property
    def traffic(self) -> Traffic:
        return self.control.traffic

    async def next_applied(self) -> ChangeApplied:
        return await asyncio.wait_for(self.applied.get(), 5)


@contextlib.asynccontextmanager
async def replica(backend: MemoryBackend) -> AsyncIterator[Replica]:
    events = Events()
    shared = SharedState(CONFIG, MonotonicClock(), events=events, backend=backend)
    control = SharedTraffic(Traffic(events), ConnectionManager(GatewayConfig()), shared)
    applied: asyncio.Queue[ChangeApplied] = asyncio.Queue()
    events.subscribe(ChangeApplied, applied.put_nowait)
    seen: list[TrafficChanged] = []
    events.subscribe(TrafficChanged, seen.append)
    async with shared:
        yield Replica(shared, control, events, applied, seen)


async def test_a_kill_on_one_replica_is_applied_by_the_other_and_not_twice_by_itself() -> None:
    backend = MemoryBackend()
    async with replica(backend) as a, replica(backend) as b:
        assert await a.control.kill("tool", "calc__add")
        a.traffic.check("calc", "sub")
        with pytest.raises(Killed):
            a.traffic.check("calc", "add")  # at once on the replica that was asked
        applied = await b.next_applied()
        assert applied.origin == a.shared.origin
        with pytest.raises(Killed):
            b.traffic.check("calc", "add")

        await a.control.set_weights("calc", {"v2": 10}, ["v1", "v2"])
        await b.next_applied()
        assert b.traffic.shares("calc", ["v1", "v2"]) == {"v1": 0.9, "v2": 0.1}

        assert await b.control.revive("tool", "calc__add")
        await a.next_applied()
        a.traffic.check("calc", "add")
        b.traffic.check("calc", "add")

        # Echo suppression: each replica applied each change once, and never its own echo.
        assert [(e.action, e.server) for e in a.traffic_events] == [
            ("kill", "calc__add"),
            ("weights", "calc"),
            ("revive", "calc__add"),
        ]
        assert [(e.action, e.server) for e in b.traffic_events] == [(e.action, e.server) for e in a.traffic_events]
        assert a.applied.empty() and b.applied.empty()


async def test_a_replica_started_later_reads_the_shared_state_and_drops_what_it_lacks() -> None:
    backend = MemoryBackend()
    async with replica(backend) as a:
        await a.control.kill("server", "files")
        await a.control.kill("tool", "calc__add")
        await a.control.set_weights("calc", {"v1": 0, "v2": 100}, ["v1", "v2"])
        await a.control.revive("tool", "calc__add")

        events = Events()
        shared = SharedState(CONFIG, MonotonicClock(), events=events, backend=backend)
        late = SharedTraffic(Traffic(events), ConnectionManager(GatewayConfig()), shared)
        late.traffic.kill("tool", "stale__tool")  # left from before: not in the shared state
        late.traffic.set_weights("old", {"v1": 50}, ["v1"])
        async with shared:  # entering reads the shared hash before it returns
            assert late.traffic.killed_servers == {"files"}
            assert late.traffic.killed_tools == set()
            assert late.traffic.weights == {"calc": {"v1": 0, "v2": 100}}


async def test_a_change_the_backend_cannot_take_is_applied_nowhere() -> None:
    backend = MemoryBackend()
    async with replica(backend) as a:
        with pytest.raises(TrafficError):
            await a.control.kill("tool", "no-separator")
        await backend.close()
        with pytest.raises(StateUnavailable, match="closed"):
            await a.control.kill("server", "calc")
        a.traffic.check("calc", None)
        assert a.traffic_events == []


async def test_a_key_change_on_one_replica_reloads_the_keys_of_the_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'toolway.db'}"
    backend = MemoryBackend()
    store = await Store.open(url)  # migrates, the API key table included
    await store.close()
    async with await KeyStore.open(url) as keys_table, replica(backend) as a, replica(backend) as b:
        b_keys = ApiKeys()
        b_keys.store = keys_table
        KeysFollower(b_keys, b.shared)
        key, record = await keys_table.create("agent")
        await a.shared.announce(KeysChanged())
        await b.next_applied()
        assert b_keys.authenticate(key).subject == "agent"
        assert await keys_table.revoke(record.id)
        await a.shared.announce(KeysChanged())
        await b.next_applied()
        assert b_keys.loaded == 0
