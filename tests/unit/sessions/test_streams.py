"""Event streams: push/close/after, history and resumption, waiting, and event ids."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest

from toolway.sessions.streams import EventStream, parse_event_id


def msg(n: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}}


def body(n: int) -> bytes:
    return orjson.dumps(msg(n))


def frame(stream: EventStream, seq: int, n: int) -> bytes:
    if stream.with_ids:
        return b"id: %s-%d\nevent: message\ndata: %s\n\n" % (stream.id.encode(), seq, body(n))
    return b"event: message\ndata: %s\n\n" % body(n)


# --- identity ---------------------------------------------------------------------------------------


def test_ids_are_distinct_and_shaped_for_event_ids() -> None:
    ids = [EventStream(with_ids=True).id for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(re.fullmatch(r"s\d+", i) for i in ids)


def test_a_new_stream_is_empty_and_open() -> None:
    s = EventStream(with_ids=False)
    assert s.empty
    assert s.seq == 0
    assert not s.closed
    assert s.only_body() is None
    assert s.after(0) == ([], 0, False)
    assert s.status == 200
    assert s.owner is None
    assert s.session_id is None


# --- push / close -----------------------------------------------------------------------------------


def test_push_numbers_messages_from_one() -> None:
    s = EventStream(with_ids=True)
    for n in range(1, 4):
        s.push(msg(n))
        assert s.seq == n
    assert not s.empty


def test_push_after_close_is_dropped() -> None:
    s = EventStream(with_ids=True)
    s.push(msg(1))
    s.close()
    s.push(msg(2))
    assert s.closed
    assert s.seq == 1
    assert s.after(0)[0] == [frame(s, 1, 1)]


def test_close_is_idempotent() -> None:
    s = EventStream(with_ids=True)
    s.close()
    s.close()
    assert s.closed
    assert s.empty


def test_push_serialises_at_once() -> None:
    s = EventStream(with_ids=False)
    m = msg(1)
    s.push(m)
    m["params"]["progress"] = 99  # later changes to the dict are not on the wire
    assert s.only_body() == body(1)


# --- only_body --------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_ids", [True, False])
def test_only_body_with_exactly_one_message(with_ids: bool) -> None:
    s = EventStream(with_ids=with_ids)
    s.push(msg(7))
    assert s.only_body() == body(7)
    s.close()
    assert s.only_body() == body(7)


@pytest.mark.parametrize("count", [0, 2, 5])
def test_only_body_is_none_unless_exactly_one(count: int) -> None:
    s = EventStream(with_ids=True)
    for n in range(count):
        s.push(msg(n))
    assert s.only_body() is None


def test_only_body_is_none_when_a_tiny_history_dropped_the_first() -> None:
    s = EventStream(with_ids=True, history=1)
    s.push(msg(1))
    s.push(msg(2))
    assert s.only_body() is None


# --- priming ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_ms", [0, 1000, 30000])
def test_priming_with_ids(retry_ms: int) -> None:
    s = EventStream(with_ids=True)
    assert s.priming(retry_ms) == b"id: %s-0\nretry: %d\ndata: \n\n" % (s.id.encode(), retry_ms)


def test_priming_event_id_resumes_from_the_start() -> None:
    s = EventStream(with_ids=True)
    first_line = s.priming(500).split(b"\n")[0].decode()
    assert parse_event_id(first_line.removeprefix("id: ")) == (s.id, 0)


def test_priming_without_ids_is_empty() -> None:
    assert EventStream(with_ids=False).priming(1000) == b""


# --- after ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_ids", [True, False])
def test_after_returns_the_newer_frames_and_the_position(with_ids: bool) -> None:
    s = EventStream(with_ids=with_ids)
    for n in range(1, 6):
        s.push(msg(n))
    assert s.after(0) == ([frame(s, i, i) for i in range(1, 6)], 5, False)
    assert s.after(3) == ([frame(s, 4, 4), frame(s, 5, 5)], 5, False)
    assert s.after(5) == ([], 5, False)


def test_frames_without_ids_carry_no_id_line() -> None:
    s = EventStream(with_ids=False)
    s.push(msg(1))
    (only,), _, _ = s.after(0)
    assert not only.startswith(b"id:")
    assert b"\nid:" not in only


def test_reading_in_steps_sees_every_message_once() -> None:
    s = EventStream(with_ids=True)
    seen: list[bytes] = []
    position = 0
    for n in range(1, 10):
        s.push(msg(n))
        if n % 3 == 0:
            frames, position, lost = s.after(position)
            assert not lost
            seen.extend(frames)
    assert seen == [frame(s, i, i) for i in range(1, 10)]


def test_after_a_position_beyond_the_end_is_empty() -> None:
    s = EventStream(with_ids=True)
    s.push(msg(1))
    assert s.after(50) == ([], 1, False)


@pytest.mark.parametrize(
    ("position", "expected_first", "lost"),
    [
        (0, 8, True),  # 1..7 fell out of the history
        (6, 8, True),  # 7 fell out
        (7, 8, False),  # exactly the oldest kept is next
        (9, 10, False),
        (10, None, False),
    ],
)
def test_bounded_history_and_the_lost_flag(position: int, expected_first: int | None, lost: bool) -> None:
    s = EventStream(with_ids=True, history=3)
    for n in range(1, 11):
        s.push(msg(n))
    frames, new_position, was_lost = s.after(position)
    assert new_position == 10
    assert was_lost is lost
    expected = [] if expected_first is None else [frame(s, i, i) for i in range(expected_first, 11)]
    assert frames == expected


def test_history_keeps_at_most_its_bound() -> None:
    s = EventStream(with_ids=True, history=4)
    for n in range(1, 101):
        s.push(msg(n))
    frames, position, lost = s.after(0)
    assert position == 100
    assert lost
    assert frames == [frame(s, i, i) for i in range(97, 101)]


# --- wait -------------------------------------------------------------------------------------------


async def test_wait_times_out_with_false() -> None:
    s = EventStream(with_ids=True)
    assert await s.wait(0) is False


async def test_wait_after_a_push_is_true_at_once() -> None:
    s = EventStream(with_ids=True)
    s.push(msg(1))
    assert await s.wait(0) is True
    # consumed: nothing new since
    assert await s.wait(0) is False


@pytest.mark.parametrize("action", ["push", "close", "wake"])
async def test_wait_wakes_on(action: str) -> None:
    s = EventStream(with_ids=True)
    waiter = asyncio.create_task(s.wait(60))
    await asyncio.sleep(0)
    assert not waiter.done()
    if action == "push":
        s.push(msg(1))
    elif action == "close":
        s.close()
    else:
        s.wake()
    assert await waiter is True


async def test_wait_wakes_every_reader() -> None:
    s = EventStream(with_ids=True)
    waiters = [asyncio.create_task(s.wait(60)) for _ in range(3)]
    await asyncio.sleep(0)
    s.push(msg(1))
    assert await asyncio.gather(*waiters) == [True, True, True]


async def test_push_to_a_closed_stream_does_not_wake() -> None:
    s = EventStream(with_ids=True)
    s.close()
    assert await s.wait(0) is True  # the close itself
    s.push(msg(1))
    assert await s.wait(0) is False


# --- parse_event_id ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s12-34", ("s12", 34)),
        ("s1-0", ("s1", 0)),
        ("s1-007", ("s1", 7)),
        ("a-b-5", ("a-b", 5)),  # the last dash separates
        ("x-99999999999999999999", ("x", 99999999999999999999)),
    ],
)
def test_parse_event_id(value: str, expected: tuple[str, int]) -> None:
    assert parse_event_id(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "s12", "-34", "s12-", "s12-+1", "s12-1.5", "s12- 1", "s12-1 ", "s12-x", "-"],
)
def test_parse_event_id_rejects(value: str) -> None:
    assert parse_event_id(value) is None


def test_parse_event_id_round_trips_frame_ids() -> None:
    s = EventStream(with_ids=True)
    for n in range(1, 4):
        s.push(msg(n))
    frames, _, _ = s.after(0)
    ids = [f.split(b"\n")[0].decode().removeprefix("id: ") for f in frames]
    assert [parse_event_id(i) for i in ids] == [(s.id, 1), (s.id, 2), (s.id, 3)]


@pytest.mark.parametrize("value", ["s1-²", "s1-³4", "s1-①"])
def test_parse_event_id_rejects_digits_int_cannot_read(value: str) -> None:
    # A client's Last-Event-ID header reaches this unchecked (ingress GET); it must be None, not a crash.
    assert parse_event_id(value) is None


@pytest.mark.parametrize("value", ["s1-\u0663", "s1-\uff13"])
def test_parse_event_id_non_ascii_decimal_digits(value: str) -> None:
    # int() reads these, so they parse; either way they must not raise.
    result = parse_event_id(value)
    assert result is None or result[0] == "s1"
