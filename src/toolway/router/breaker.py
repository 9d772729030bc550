"""A circuit breaker for one replica: closed -> open -> half-open, on an injected monotonic clock.

Closed: calls flow; `failure_threshold` consecutive failures open it. Open: no calls
for `open_seconds`. Half-open: up to `half_open_calls` trial calls at once;
`success_threshold` successes close it, any failure opens it again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from toolway.clock import Clock
from toolway.config.routing import Breaker as BreakerConfig


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


OnTransition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Per-replica breaker. `allow` before a call; `success`/`failure` after it (never both)."""

    def __init__(self, config: BreakerConfig, clock: Clock, on_transition: OnTransition | None = None) -> None:
        self._config = config
        self._clock = clock
        self._on_transition = on_transition
        self.state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._successes = 0  # while half-open
        self._trials = 0  # half-open calls in flight
        self._opened_at = 0.0

    def available(self) -> bool:
        """Could a call go through now? (No side effects: the balancer asks this of every replica.)"""
        if not self._config.enabled or self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self._clock.now() - self._opened_at >= self._config.open_seconds
        return self._trials < self._config.half_open_calls

    def allow(self) -> bool:
        """Take permission for one call: False when open (or half-open with every trial slot taken)."""
        if not self.available():
            return False
        if self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN)
            self._successes = self._trials = 0
        if self.state is BreakerState.HALF_OPEN:
            self._trials += 1
        return True

    def success(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._successes += 1
            if self._successes >= self._config.success_threshold:
                self._failures = 0
                self._move(BreakerState.CLOSED)
        else:
            self._failures = 0

    def failure(self) -> None:
        if not self._config.enabled:
            return
        if self.state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._open()
        elif self.state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self._config.failure_threshold:
                self._open()

    def release(self) -> None:
        """A call that took permission ended with neither verdict (e.g. the client cancelled)."""
        if self.state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    def _open(self) -> None:
        self._opened_at = self._clock.now()
        self._failures = 0
        self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        old, self.state = self.state, state
        if old is not state and self._on_transition is not None:
            self._on_transition(old, state)
