"""A call's deadline in phases: first byte, total, and renewal by progress.

`first_byte`: the server must say something about the call (progress, a log
message, a question, or the answer) within it. Once it has, the `total`
deadline applies. When `progress_max` is set, each progress notification renews
the total deadline from that moment, but never past `progress_max` from the start.
"""

from __future__ import annotations

import asyncio
from typing import Any

from toolway.pipeline.context import Sink


class WatchedSink:
    """Passes everything to the caller's sink and moves the call's `asyncio.Timeout` as it goes."""

    __slots__ = ("_extend", "_limit", "_sink", "_started", "_timeout", "_total", "heard")

    def __init__(
        self,
        sink: Sink,
        timeout: asyncio.Timeout,
        *,
        started: float,
        total: float,
        first_byte: float | None,
        progress_max: float | None,
    ) -> None:
        self._sink = sink
        self._timeout = timeout
        self._started = started
        self._total = total
        self._extend = progress_max is not None
        self._limit = started + max(total, progress_max or 0.0)
        self.heard = first_byte is None  # nothing to wait for when there is no first-byte phase

    @staticmethod
    def first_deadline(started: float, total: float, first_byte: float | None) -> float:
        return started + (min(first_byte, total) if first_byte is not None else total)

    def _heard(self, progress: bool) -> None:
        loop_now = asyncio.get_running_loop().time()
        if progress and self._extend:
            self._timeout.reschedule(min(loop_now + self._total, self._limit))
        elif not self.heard:
            self._timeout.reschedule(self._started + self._total)
        self.heard = True

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._heard(method == "notifications/progress")
        self._sink.notify(method, params)

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self._heard(False)
        return await self._sink.request(method, params)
