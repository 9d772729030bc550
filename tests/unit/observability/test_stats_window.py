"""The per-tool summary's window, counts and percentiles, driven by a fake clock (STYLE rule 9)."""

from __future__ import annotations

import random

import pytest

from toolway.observability.events import CallFinished, Events
from toolway.observability.stats import Stats, install
from toolway.pipeline.context import Call


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


def by_tool(stats: Stats) -> dict[str, dict[str, object]]:
    return {row["tool"]: row for row in stats.snapshot()["tools"]}


def by_server(stats: Stats) -> dict[str, dict[str, object]]:
    return {row["server"]: row for row in stats.snapshot()["servers"]}


def test_counts_errors_and_exact_percentiles() -> None:
    stats = Stats(FakeClock())
    for ms in range(1, 101):  # 1..100 ms, every tenth one an error
        stats.record("alpha", "alpha__echo", ms / 1000, error=ms % 10 == 0)
    stats.record("alpha", None, 0.5, error=False)  # a prompts/get: the server's, no tool's

    tool = by_tool(stats)["alpha__echo"]
    assert (tool["calls"], tool["errors"], tool["error_rate"]) == (100, 10, 0.1)
    assert (tool["p50_ms"], tool["p95_ms"], tool["p99_ms"]) == (50.0, 95.0, 99.0)  # nearest rank
    assert tool["server"] == "alpha"
    server = by_server(stats)["alpha"]
    assert (server["calls"], server["errors"]) == (101, 10)
    assert stats.snapshot()["window_seconds"] == 300.0


def test_calls_leave_the_window_when_their_bucket_is_window_old() -> None:
    clock = FakeClock(0.0)
    stats = Stats(clock, window=300.0, buckets=30)  # 10 s buckets
    stats.record("alpha", "alpha__echo", 0.01, error=True)
    clock.advance(200)
    stats.record("alpha", "alpha__echo", 0.02, error=False)

    clock.advance(109.9)  # t=309.9: the first bucket [0, 10) ended 299.9 s ago
    assert by_tool(stats)["alpha__echo"]["calls"] == 2
    clock.advance(0.1)  # t=310: it ended 300 s ago, so it is out
    row = by_tool(stats)["alpha__echo"]
    assert (row["calls"], row["errors"], row["p50_ms"]) == (1, 0, 20.0)

    clock.advance(200)  # everything is old: the keys themselves are forgotten
    assert stats.snapshot() == {"window_seconds": 300.0, "servers": [], "tools": []}


def test_a_busy_key_keeps_a_bounded_reservoir_but_exact_counts() -> None:
    clock = FakeClock(0.0)
    stats = Stats(clock, window=60.0, buckets=6, reservoir=16, rng=random.Random(7))
    for i in range(10_000):
        stats.record("alpha", "alpha__echo", 0.001 + (i % 100) / 1000, error=i % 4 == 0)
        if i % 100 == 99:
            clock.advance(1.0)  # 100 s in all: the window slides while calls come in
    series = stats._tools[("alpha", "alpha__echo")]
    assert len(series.buckets) <= 7
    assert all(len(b.latencies) <= 16 for b in series.buckets)
    row = by_tool(stats)["alpha__echo"]
    # t=100: the buckets starting at 40 s and later are in the window, each with 1,000 calls.
    assert (row["calls"], row["errors"]) == (6000, 1500)
    assert 1.0 <= row["p50_ms"] <= 100.0


def test_percentiles_weigh_each_bucket_by_its_calls_not_its_samples() -> None:
    clock = FakeClock(0.0)
    stats = Stats(clock, window=60.0, buckets=6, reservoir=10)
    for _ in range(1000):
        stats.record("alpha", "alpha__slow", 1.0, error=False)  # 10 samples stand for 1,000 calls
    clock.advance(10)
    for _ in range(10):
        stats.record("alpha", "alpha__slow", 0.001, error=False)  # 10 samples for 10 calls
    row = by_tool(stats)["alpha__slow"]
    assert row["calls"] == 1010
    assert row["p50_ms"] == 1000.0  # unweighted, half the samples would say 1 ms
    assert row["p99_ms"] == 1000.0


def test_tool_keys_are_bounded() -> None:
    stats = Stats(FakeClock(), max_tools=3)
    for i in range(10):
        stats.record("alpha", f"alpha__t{i}", 0.01, error=False)
    tools = by_tool(stats)
    assert set(tools) == {"alpha__t0", "alpha__t1", "alpha__t2", "other"}
    assert tools["other"]["calls"] == 7


def test_events_are_counted_with_the_labels_given_and_gateway_calls_are_not() -> None:
    events = Events()
    labels = {"alpha__echo": ("alpha", "alpha__echo"), "tools/list": ("", "")}
    stats = install(events, FakeClock(), lambda call: labels[call.target or call.method])

    def finished(method: str, target: str | None, outcome: str) -> CallFinished:
        call = Call(method, None, "modern", "2026-07-28", {}, None, "rid", target=target)
        return CallFinished(call, outcome, None, 0.004, None)

    events.emit(finished("tools/call", "alpha__echo", "ok"))
    events.emit(finished("tools/call", "alpha__echo", "tool_error"))
    events.emit(finished("tools/list", None, "ok"))
    snapshot = stats.snapshot()
    assert [row["server"] for row in snapshot["servers"]] == ["alpha"]
    (tool,) = snapshot["tools"]
    assert (tool["tool"], tool["calls"], tool["errors"], tool["p99_ms"]) == ("alpha__echo", 2, 1, 4.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Stats(FakeClock(), window=0)
