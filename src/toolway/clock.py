"""Injected time. Logic never reads the clocks itself: a monotonic `Clock` for intervals and
deadlines, a `WallClock` for the time of day (policy windows); tests inject fakes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WallClock(Protocol):
    """The time of day, for rules that depend on it (policy time windows). Tests inject a fixed one."""

    def now(self) -> datetime:
        """An aware datetime (any zone; consumers convert)."""
        ...


class SystemWallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedWallClock:
    """A wall clock that says what it is told: `FixedWallClock(datetime(..., tzinfo=...))`, `.set(...)`."""

    def __init__(self, when: datetime) -> None:
        self.set(when)

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedWallClock needs an aware datetime (give it a tzinfo)")
        self._when = when

    def now(self) -> datetime:
        return self._when
