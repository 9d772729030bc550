"""A monotonic clock for tests that moves only when the test moves it.

clock = ManualClock()
async with running_gateway(..., clock=clock) as gw:
    clock.advance(60)     # every `clock.sleep` due by then returns; nothing else waits on real time

Everything in the gateway that waits on the injected clock (idle session reaping, reconnect
back-off, health probes, retries) then runs in the test's order, not the machine's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["ManualClock"]


class ManualClock:
    """`now()` is what the test made it; `sleep(s)` returns once `advance` has moved past `s`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future  # a cancelled sleeper's future is cancelled too, and skipped on wake

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper due by then."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def sleepers(self) -> int:
        """How many sleeps are waiting (to know the gateway has reached its next wait)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())
