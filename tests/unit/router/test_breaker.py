"""The circuit breaker's states on a fake monotonic clock."""

from __future__ import annotations

from toolway.config.routing import Breaker
from toolway.router.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def breaker(clock: FakeClock, **config: object) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    moves: list[tuple[str, str]] = []
    cb = CircuitBreaker(Breaker.model_validate(config), clock, lambda old, new: moves.append((old.value, new.value)))
    return cb, moves


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    clock = FakeClock()
    cb, moves = breaker(clock, failure_threshold=3)
    for _ in range(2):
        assert cb.allow()
        cb.failure()
    cb.success()  # not consecutive any more
    for _ in range(2):
        cb.failure()
    assert cb.state is BreakerState.CLOSED and cb.available()
    cb.failure()
    assert cb.state is BreakerState.OPEN
    assert not cb.available() and not cb.allow()
    assert moves == [("closed", "open")]


def test_open_half_opens_after_its_time_and_closes_on_success() -> None:
    clock = FakeClock()
    cb, moves = breaker(clock, failure_threshold=1, open_seconds=10, half_open_calls=1, success_threshold=2)
    cb.failure()
    clock.t += 9.9
    assert not cb.allow()
    clock.t += 0.1
    assert cb.available()
    assert cb.allow()  # the trial
    assert cb.state is BreakerState.HALF_OPEN
    assert not cb.available() and not cb.allow()  # one trial at a time
    cb.success()
    assert cb.state is BreakerState.HALF_OPEN  # two successes needed
    assert cb.allow()
    cb.success()
    assert cb.state is BreakerState.CLOSED
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_opens_it_again_for_a_full_period() -> None:
    clock = FakeClock()
    cb, moves = breaker(clock, failure_threshold=1, open_seconds=5)
    cb.failure()
    clock.t += 5
    assert cb.allow()
    cb.failure()
    assert cb.state is BreakerState.OPEN
    clock.t += 4.9
    assert not cb.available()
    clock.t += 0.1
    assert cb.available()
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]


def test_a_trial_that_ends_without_a_verdict_frees_its_slot() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, failure_threshold=1, open_seconds=1)
    cb.failure()
    clock.t += 1
    assert cb.allow()
    assert not cb.available()
    cb.release()  # e.g. the client cancelled
    assert cb.available()


def test_disabled_never_opens() -> None:
    cb, moves = breaker(FakeClock(), enabled=False, failure_threshold=1)
    for _ in range(10):
        cb.failure()
    assert cb.allow() and moves == []
