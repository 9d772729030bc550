"""DownstreamSession bookkeeping (ids, remembered streams, close) and SessionTable's on_end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from toolway.sessions import downstream
from toolway.sessions.downstream import DownstreamSession, SessionTable
from toolway.sessions.streams import EventStream

PATH = "/mcp"
BOUND = downstream._MAX_STREAMS


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def session(sid: str = "s1") -> DownstreamSession:
    return DownstreamSession(
        id=sid,
        path=PATH,
        scope=None,
        protocol_version="2025-11-25",
        client_capabilities={},
        client_info=None,
        last_seen=0.0,
    )


# --- DownstreamSession ------------------------------------------------------------------------------


def test_request_ids_count_per_session() -> None:
    a, b = session("a"), session("b")
    assert [a.next_request_id() for _ in range(3)] == ["tw-1", "tw-2", "tw-3"]
    assert b.next_request_id() == "tw-1"


def test_each_session_has_its_own_standalone_stream_with_ids() -> None:
    a, b = session("a"), session("b")
    assert a.standalone is not b.standalone
    assert a.standalone.with_ids
    assert a.streams == {}
    assert a.pending == {}
    assert a.inflight == {}


def test_stream_finds_the_standalone_and_remembered_streams() -> None:
    s = session()
    post = EventStream(with_ids=True)
    s.remember(post)
    assert s.stream(s.standalone.id) is s.standalone
    assert s.stream(post.id) is post
    assert s.stream("s0") is None
    assert s.stream("") is None


def test_stream_does_not_find_other_sessions_streams() -> None:
    a, b = session("a"), session("b")
    post = EventStream(with_ids=True)
    a.remember(post)
    assert b.stream(post.id) is None
    assert b.stream(a.standalone.id) is None


@pytest.mark.parametrize("extra", [0, 1, 5, BOUND])
def test_remember_keeps_the_newest_up_to_the_bound(extra: int) -> None:
    s = session()
    streams = [EventStream(with_ids=True) for _ in range(BOUND + extra)]
    for stream in streams:
        s.remember(stream)
    assert len(s.streams) == BOUND
    assert list(s.streams.values()) == streams[-BOUND:]
    for forgotten in streams[:extra]:
        assert s.stream(forgotten.id) is None
    assert s.stream(s.standalone.id) is s.standalone  # never forgotten


def test_remember_the_same_stream_twice_keeps_one_entry() -> None:
    s = session()
    stream = EventStream(with_ids=True)
    s.remember(stream)
    s.remember(stream)
    assert list(s.streams) == [stream.id]


async def test_close_ends_streams_and_fails_pending_questions_and_inflight_calls() -> None:
    s = session()
    posts = [EventStream(with_ids=True) for _ in range(3)]
    for post in posts:
        s.remember(post)
    loop = asyncio.get_running_loop()
    waiting: asyncio.Future[dict[str, Any]] = loop.create_future()
    answered: asyncio.Future[dict[str, Any]] = loop.create_future()
    answered.set_result({"result": {}})
    s.pending = {"tw-1": waiting, "tw-2": answered}
    started = asyncio.Event()

    async def call() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await started.wait()
    s.inflight[1] = task

    s.close()

    assert s.standalone.closed
    assert all(p.closed for p in posts)
    assert waiting.cancelled()
    assert answered.result() == {"result": {}}
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_close_twice_is_harmless() -> None:
    s = session()
    s.close()
    s.close()
    assert s.standalone.closed


# --- SessionTable on_end ----------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Ended:
    def __init__(self) -> None:
        self.sessions: list[DownstreamSession] = []

    def __call__(self, s: DownstreamSession) -> None:
        assert s.standalone.closed, "on_end runs after the session is closed"
        self.sessions.append(s)


def make(clock: FakeClock, ended: Ended, *, max_sessions: int = 10, idle: float = 60.0) -> SessionTable:
    return SessionTable(clock, max_sessions=max_sessions, idle_seconds=idle, on_end=ended)


def new(t: SessionTable, path: str = PATH) -> DownstreamSession:
    return t.create(path, "2025-11-25", {}, None)


def test_end_calls_on_end_once(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended)
    a, b = new(t), new(t)
    assert t.end(a.id, PATH)
    assert ended.sessions == [a]
    assert not t.end(a.id, PATH)
    assert ended.sessions == [a]
    assert not b.standalone.closed


@pytest.mark.parametrize(("sid", "path"), [("unknown", PATH), (None, "/elsewhere")])
def test_failed_end_does_not_call_on_end(clock: FakeClock, sid: str | None, path: str) -> None:
    ended = Ended()
    t = make(clock, ended)
    s = new(t)
    assert not t.end(sid or s.id, path)
    assert ended.sessions == []
    assert not s.standalone.closed


def test_expiry_on_get_calls_on_end(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended, idle=60.0)
    s = new(t)
    clock.advance(61)
    assert t.get(s.id, PATH) is None
    assert ended.sessions == [s]
    assert t.get(s.id, PATH) is None
    assert ended.sessions == [s]


def test_end_of_an_expired_session_reports_the_expiry_once(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended, idle=60.0)
    s = new(t)
    clock.advance(61)
    assert t.end(s.id, PATH) is False
    assert ended.sessions == [s]


def test_expiry_swept_by_create_calls_on_end(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended, idle=60.0)
    old1, old2 = new(t), new(t)
    clock.advance(61)
    fresh = new(t)
    assert ended.sessions == [old1, old2]
    assert not fresh.standalone.closed


def test_eviction_calls_on_end_with_the_least_recently_seen(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended, max_sessions=2)
    a = new(t)
    b = new(t)
    t.get(a.id, PATH)  # b is now the least recently seen
    new(t)
    assert ended.sessions == [b]
    assert len(t) == 2


def test_close_all_calls_on_end_for_every_session(clock: FakeClock) -> None:
    ended = Ended()
    t = make(clock, ended)
    sessions = [new(t) for _ in range(4)]
    t.close_all()
    assert ended.sessions == sessions
    assert len(t) == 0
    assert t.all() == []
    assert all(s.standalone.closed for s in sessions)


def test_no_on_end_is_fine(clock: FakeClock) -> None:
    t = SessionTable(clock, max_sessions=1, idle_seconds=1.0)
    a = new(t)
    new(t)  # evicts a
    assert a.standalone.closed
    t.close_all()
    assert len(t) == 0


def test_create_carries_the_scope(clock: FakeClock) -> None:
    t = make(clock, Ended())
    s = t.create("/servers/web/mcp", "2025-11-25", {}, None, scope="web")
    assert s.scope == "web"
    assert t.get(s.id, "/servers/web/mcp") is s
