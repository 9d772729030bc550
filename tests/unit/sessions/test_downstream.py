"""Handshake-era downstream sessions: SessionTable."""

from __future__ import annotations

import re

import pytest

from toolway.sessions.downstream import DownstreamSession, SessionTable

PATH = "/mcp"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def table(clock: FakeClock, *, max_sessions: int = 100, idle_seconds: float = 60.0) -> SessionTable:
    return SessionTable(clock, max_sessions=max_sessions, idle_seconds=idle_seconds)


def new(t: SessionTable, path: str = PATH) -> DownstreamSession:
    return t.create(path, "2025-11-25", {"roots": {}}, {"name": "agent", "version": "1"})


def test_create_records_the_client(clock: FakeClock) -> None:
    t = table(clock)
    s = t.create(PATH, "2025-06-18", {"sampling": {}}, None)
    assert s.path == PATH
    assert s.protocol_version == "2025-06-18"
    assert s.client_capabilities == {"sampling": {}}
    assert s.client_info is None
    assert s.last_seen == clock.now()
    assert s.initialized is False
    assert len(t) == 1


def test_ids_are_32_hex_chars_and_distinct(clock: FakeClock) -> None:
    t = table(clock, max_sessions=1000)
    ids = [new(t).id for _ in range(500)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 500
    assert len(t) == 500


def test_get_returns_the_same_session(clock: FakeClock) -> None:
    t = table(clock)
    s = new(t)
    assert t.get(s.id, PATH) is s


@pytest.mark.parametrize("unknown", ["", "0" * 32, "not-a-session", "F" * 32])
def test_get_unknown_is_none(clock: FakeClock, unknown: str) -> None:
    t = table(clock)
    new(t)
    assert t.get(unknown, PATH) is None


def test_id_lookup_is_case_sensitive(clock: FakeClock) -> None:
    t = table(clock)
    s = new(t)
    assert t.get(s.id.upper(), PATH) is None or s.id == s.id.upper()


@pytest.mark.parametrize("other_path", ["/servers/web/mcp", "/mcp/", "/MCP", "", "/"])
def test_a_session_is_bound_to_its_path(clock: FakeClock, other_path: str) -> None:
    t = table(clock)
    s = new(t)
    assert t.get(s.id, other_path) is None
    assert t.end(s.id, other_path) is False
    # still alive where it was opened
    assert t.get(s.id, PATH) is s
    assert len(t) == 1


def test_end(clock: FakeClock) -> None:
    t = table(clock)
    s = new(t)
    assert t.end(s.id, PATH) is True
    assert t.get(s.id, PATH) is None
    assert t.end(s.id, PATH) is False
    assert len(t) == 0


def test_end_unknown_is_false(clock: FakeClock) -> None:
    assert table(clock).end("nope", PATH) is False


def test_end_only_ends_that_session(clock: FakeClock) -> None:
    t = table(clock)
    a, b = new(t), new(t)
    assert t.end(a.id, PATH) is True
    assert t.get(b.id, PATH) is b


@pytest.mark.parametrize(("idle", "alive"), [(0.0, True), (59.9, True), (60.0, True), (60.001, False), (1e6, False)])
def test_idle_expiry_on_get(clock: FakeClock, idle: float, alive: bool) -> None:
    t = table(clock, idle_seconds=60.0)
    s = new(t)
    clock.advance(idle)
    assert (t.get(s.id, PATH) is s) is alive
    if not alive:
        assert len(t) == 0
        # expired means gone, even if the clock could be wound back
        clock.advance(-idle)
        assert t.get(s.id, PATH) is None


def test_get_touches_the_session(clock: FakeClock) -> None:
    t = table(clock, idle_seconds=60.0)
    s = new(t)
    for _ in range(10):
        clock.advance(50)
        assert t.get(s.id, PATH) is s
        assert s.last_seen == clock.now()
    clock.advance(61)
    assert t.get(s.id, PATH) is None


def test_get_on_the_wrong_path_does_not_touch(clock: FakeClock) -> None:
    t = table(clock, idle_seconds=60.0)
    s = new(t)
    clock.advance(50)
    assert t.get(s.id, "/elsewhere") is None
    assert s.last_seen == 1000.0
    clock.advance(20)
    assert t.get(s.id, PATH) is None


def test_create_sweeps_idle_sessions(clock: FakeClock) -> None:
    t = table(clock, idle_seconds=60.0)
    old1, old2 = new(t), new(t)
    clock.advance(30)
    recent = new(t)
    clock.advance(31)  # old ones are 61s idle, recent 31s
    fresh = new(t)
    assert len(t) == 2
    assert t.get(old1.id, PATH) is None
    assert t.get(old2.id, PATH) is None
    assert t.get(recent.id, PATH) is recent
    assert t.get(fresh.id, PATH) is fresh


def test_sweep_stops_at_the_first_live_session(clock: FakeClock) -> None:
    t = table(clock, idle_seconds=60.0)
    a = new(t)
    clock.advance(10)
    b = new(t)
    clock.advance(40)
    t.get(a.id, PATH)  # a becomes the most recently seen
    clock.advance(15)  # b: 55s idle, a: 15s idle
    new(t)
    assert len(t) == 3
    assert t.get(b.id, PATH) is b


def test_bound_on_count_evicts_the_least_recently_seen(clock: FakeClock) -> None:
    t = table(clock, max_sessions=3)
    a = new(t)
    clock.advance(1)
    b = new(t)
    clock.advance(1)
    c = new(t)
    clock.advance(1)
    assert t.get(a.id, PATH) is a  # a is now the most recently seen; b the least
    clock.advance(1)
    d = new(t)
    assert len(t) == 3
    assert t.get(b.id, PATH) is None
    assert t.get(a.id, PATH) is a
    assert t.get(c.id, PATH) is c
    assert t.get(d.id, PATH) is d


def test_bound_of_one(clock: FakeClock) -> None:
    t = table(clock, max_sessions=1)
    a = new(t)
    b = new(t)
    assert len(t) == 1
    assert t.get(a.id, PATH) is None
    assert t.get(b.id, PATH) is b


def test_bound_holds_under_churn(clock: FakeClock) -> None:
    t = table(clock, max_sessions=10)
    sessions = []
    for _ in range(100):
        clock.advance(0.5)
        sessions.append(new(t))
        assert len(t) <= 10
    assert [s for s in sessions if t.get(s.id, PATH) is not None] == sessions[-10:]


def test_sessions_on_different_paths_share_the_bound(clock: FakeClock) -> None:
    t = table(clock, max_sessions=2)
    a = new(t, "/mcp")
    b = new(t, "/servers/x/mcp")
    c = new(t, "/servers/y/mcp")
    assert t.get(a.id, "/mcp") is None
    assert t.get(b.id, "/servers/x/mcp") is b
    assert t.get(c.id, "/servers/y/mcp") is c
