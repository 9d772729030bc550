"""The health state machine on a fake clock: thresholds, grace, recovery, what is listed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from toolway.config.model import StdioServerConfig
from toolway.observability.events import Events
from toolway.registry.health import HealthMonitor
from toolway.registry.records import HealthEvent
from toolway.sessions.upstream import State, UpstreamConnection
from toolway.upstream.client import Negotiated


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the state machine never sleeps")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def connection(http: aiohttp.ClientSession, clock: FakeClock, **health: float) -> UpstreamConnection:
    config = StdioServerConfig(name="s", transport="stdio", command=["true"], health=health)  # type: ignore[arg-type]
    conn = UpstreamConnection(config, http, clock, lambda c: None)
    conn.negotiated = Negotiated(era="handshake", protocol_version="2025-11-25")
    conn.state = State.READY
    return conn


def monitor(clock: FakeClock, log: list[HealthEvent], changed: list[str]) -> HealthMonitor:
    return HealthMonitor(clock, Events(), now=lambda: datetime.now(UTC), record=log.append, on_change=changed.append)


async def test_thresholds_grace_and_recovery(http: aiohttp.ClientSession) -> None:
    clock, log, changed = FakeClock(), [], []  # type: ignore[var-annotated]
    health = monitor(clock, log, changed)
    conn = connection(http, clock, unhealthy_after=3, healthy_after=2, grace_seconds=5)
    health.watch(conn, lambda name, c: None)  # type: ignore[arg-type, return-value]
    assert health.state("s").state == "healthy"  # type: ignore[union-attr]

    health.failure("s", "slow")
    health.failure("s", "slow")
    assert health.state("s").state == "healthy"  # type: ignore[union-attr]
    health.failure("s", "slow")
    assert health.state("s").state == "unhealthy" and health.listed(conn)  # type: ignore[union-attr]

    clock.t += 4.9
    health.failure("s", "slow")
    assert health.listed(conn)  # still in its grace
    clock.t += 0.1
    health.failure("s", "slow")
    assert health.state("s").state == "hidden" and not health.listed(conn)  # type: ignore[union-attr]

    health.success("s", "probe")
    assert not health.listed(conn)
    health.success("s", "heartbeat")
    assert health.state("s").state == "healthy" and health.listed(conn)  # type: ignore[union-attr]
    assert [(e.previous, e.state) for e in log] == [
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "hidden"),
        ("hidden", "healthy"),
    ]
    assert changed == ["s"] * 4


async def test_a_lost_connection_is_definitive_and_without_grace_hides_at_once(http: aiohttp.ClientSession) -> None:
    clock, log = FakeClock(), []  # type: ignore[var-annotated]
    health = monitor(clock, log, [])
    conn = connection(http, clock, unhealthy_after=5)
    health.watch(conn, lambda name, c: None)  # type: ignore[arg-type, return-value]
    conn.state, conn.last_error = State.DOWN, "the process exited with code 3"
    health.connection_changed(conn)
    assert [(e.state, e.reason) for e in log[1:]] == [
        ("unhealthy", "the process exited with code 3"),
        ("hidden", "unhealthy for 0s (grace)"),
    ]
    assert not health.listed(conn)
    health.unwatch("s")
    assert not health.success("s", "heartbeat")  # not watched any more
