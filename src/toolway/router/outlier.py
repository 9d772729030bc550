"""Outlier detection for one replica: eject it after consecutive failures or a high error rate.

An ejected replica gets no new calls until its ejection ends; each new ejection
lasts longer (base x times ejected, capped). Whether the pool may eject one more
replica (`max_ejected_percent`) is the caller's question, asked through `may_eject`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from toolway.clock import Clock
from toolway.config.routing import OutlierDetection


class OutlierTracker:
    """Per-replica failure accounting. `record(ok)` after each call."""

    def __init__(
        self,
        config: OutlierDetection,
        clock: Clock,
        may_eject: Callable[[], bool],
        on_eject: Callable[[float, str], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._may_eject = may_eject
        self._on_eject = on_eject
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=config.window)  # True: failed
        self._until = 0.0
        self.times_ejected = 0

    def ejected(self) -> bool:
        return self._clock.now() < self._until

    def ejected_for(self) -> float:
        """Seconds left of the current ejection (0 when not ejected)."""
        return max(0.0, self._until - self._clock.now())

    def record(self, ok: bool) -> None:
        config = self._config
        if not config.enabled:
            return
        self._recent.append(not ok)
        if ok:
            self._consecutive = 0
            return
        self._consecutive += 1
        reason = None
        if self._consecutive >= config.consecutive_failures:
            reason = f"{self._consecutive} consecutive failures"
        elif config.error_rate is not None and len(self._recent) == config.window:
            rate = sum(self._recent) / config.window
            if rate >= config.error_rate:
                reason = f"{rate:.0%} of the last {config.window} calls failed"
        if reason is not None and not self.ejected() and self._may_eject():
            self._eject(reason)

    def _eject(self, reason: str) -> None:
        self.times_ejected += 1
        seconds = min(self._config.base_ejection_seconds * self.times_ejected, self._config.max_ejection_seconds)
        self._until = self._clock.now() + seconds
        self._consecutive = 0
        self._recent.clear()
        if self._on_eject is not None:
            self._on_eject(seconds, reason)
