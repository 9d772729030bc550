"""Per-server and per-tool summary over a recent window: calls, errors, p50/p95/p99 latency.

What `GET /admin/stats` and `toolway stats` show. Fed by `CallFinished` events with
the same bounded labels as the metrics, so the two agree.

The window is split into fixed time buckets: counts are exact, and each bucket keeps
a bounded reservoir of latencies (uniform sampling once full), so memory per key is
bounded however busy the gateway is. A bucket leaves the window when its end is
`window` seconds old: the summary covers the last `window` seconds, rounded up to a
whole bucket.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from toolway.clock import Clock
from toolway.observability.events import CallFinished, Events
from toolway.pipeline.context import Call

DEFAULT_WINDOW = 300.0
BUCKETS = 30
RESERVOIR = 256  # latencies kept per bucket and key
MAX_TOOLS = 10_000  # tool keys before further ones fold into "<server>'s other"
QUANTILES = (0.5, 0.95, 0.99)
OTHER = "other"

LabelCall = Callable[[Call], tuple[str, str]]


@dataclass(slots=True)
class _Bucket:
    start: float
    calls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Summary:
    calls: int
    errors: int
    p50: float  # seconds
    p95: float
    p99: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": round(self.p50 * 1000, 3),
            "p95_ms": round(self.p95 * 1000, 3),
            "p99_ms": round(self.p99 * 1000, 3),
        }


class _Series:
    """One key's buckets, oldest first."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: deque[_Bucket] = deque()

    def add(self, start: float, duration: float, error: bool, reservoir: int, rng: random.Random) -> None:
        if not self.buckets or self.buckets[-1].start != start:
            self.buckets.append(_Bucket(start))
        bucket = self.buckets[-1]
        bucket.calls += 1
        bucket.errors += error
        if len(bucket.latencies) < reservoir:
            bucket.latencies.append(duration)
        else:  # Algorithm R: every call so far had the same chance to be kept.
            slot = rng.randrange(bucket.calls)
            if slot < reservoir:
                bucket.latencies[slot] = duration

    def expire(self, cutoff: float, width: float) -> None:
        """Drop the buckets that ended at or before `cutoff`."""
        while self.buckets and self.buckets[0].start + width <= cutoff:
            self.buckets.popleft()

    def summary(self) -> Summary | None:
        calls = sum(b.calls for b in self.buckets)
        if not calls:
            return None
        # A sample stands for calls/kept calls of its bucket, so busy buckets weigh what they should.
        weighted = sorted(
            (latency, b.calls / len(b.latencies)) for b in self.buckets for latency in b.latencies if b.latencies
        )
        p50, p95, p99 = _quantiles(weighted, QUANTILES)
        return Summary(calls, sum(b.errors for b in self.buckets), p50, p95, p99)


def _quantiles(weighted: list[tuple[float, float]], quantiles: tuple[float, ...]) -> list[float]:
    """Nearest-rank quantiles of sorted (value, weight) pairs: the first value whose cumulative weight reaches q."""
    total = sum(weight for _, weight in weighted)
    results: list[float] = []
    index, cumulative = 0, 0.0
    for q in quantiles:
        rank = max(q * total, 1e-12) * (1 - 1e-9)  # tolerate float sums landing just under an exact rank
        while index < len(weighted) and cumulative + weighted[index][1] < rank:
            cumulative += weighted[index][1]
            index += 1
        results.append(weighted[min(index, len(weighted) - 1)][0])
    return results


class Stats:
    """Recent calls per server and per tool; memory bounded by keys x buckets x reservoir."""

    def __init__(
        self,
        clock: Clock,
        *,
        label: LabelCall | None = None,
        window: float = DEFAULT_WINDOW,
        buckets: int = BUCKETS,
        reservoir: int = RESERVOIR,
        max_tools: int = MAX_TOOLS,
        rng: random.Random | None = None,
    ) -> None:
        if window <= 0 or buckets <= 0 or reservoir <= 0:
            raise ValueError("window, buckets and reservoir must be positive")
        self.window = window
        self._clock = clock
        self._label = label
        self._width = window / buckets
        self._reservoir = reservoir
        self._max_tools = max_tools
        self._rng = rng or random.Random(0)
        self._servers: dict[str, _Series] = {}
        self._tools: dict[tuple[str, str], _Series] = {}

    def on_call(self, event: CallFinished) -> None:
        """The `CallFinished` listener. Calls that reached no server (merged lists, ping) are not counted."""
        if self._label is None:
            raise RuntimeError("Stats.on_call needs the `label` function")
        server, tool = self._label(event.call)
        if server:
            self.record(server, tool or None, event.duration, event.outcome != "ok")

    def record(self, server: str, tool: str | None, duration: float, error: bool) -> None:
        """Count one call to `server` (and to `tool`, a namespaced name, when it was a tool call)."""
        now = self._clock.now()
        start = math.floor(now / self._width) * self._width
        self._add(self._series(self._servers, server), now, start, duration, error)
        if tool is not None:
            key = (server, tool)
            if key not in self._tools and len(self._tools) >= self._max_tools:
                self._prune()
                if len(self._tools) >= self._max_tools:
                    key = (server, OTHER)
            self._add(self._series(self._tools, key), now, start, duration, error)

    def snapshot(self) -> dict[str, Any]:
        """The summary as JSON-ready data, servers and tools sorted by name."""
        self._prune()
        servers = [
            {"server": name, **summary.as_json()}
            for name, series in sorted(self._servers.items())
            if (summary := series.summary()) is not None
        ]
        tools = [
            {"tool": tool, "server": server, **summary.as_json()}
            for (server, tool), series in sorted(self._tools.items())
            if (summary := series.summary()) is not None
        ]
        return {"window_seconds": self.window, "servers": servers, "tools": tools}

    def _add(self, series: _Series, now: float, start: float, duration: float, error: bool) -> None:
        if series.buckets and series.buckets[-1].start != start:
            series.expire(now - self.window, self._width)  # A new bucket: a busy key never grows past the window.
        series.add(start, duration, error, self._reservoir, self._rng)

    def _series(self, table: dict[Any, _Series], key: Hashable) -> _Series:
        series = table.get(key)
        if series is None:
            series = table[key] = _Series()
        return series

    def _prune(self) -> None:
        """Forget buckets that left the window, and keys left with none."""
        cutoff = self._clock.now() - self.window
        tables: tuple[dict[Any, _Series], ...] = (self._servers, self._tools)
        for table in tables:
            for key, series in list(table.items()):
                series.expire(cutoff, self._width)
                if not series.buckets:
                    del table[key]


def install(events: Events, clock: Clock, label: LabelCall, *, window: float = DEFAULT_WINDOW) -> Stats:
    """Create the gateway's per-tool summary and subscribe it to its events."""
    stats = Stats(clock, label=label, window=window)
    events.subscribe(CallFinished, stats.on_call)
    return stats
