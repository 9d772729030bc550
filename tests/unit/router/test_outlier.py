"""Outlier detection: ejection after consecutive failures or a high error rate, growing back-off."""

from __future__ import annotations

from toolway.config.routing import OutlierDetection
from toolway.router.outlier import OutlierTracker


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def tracker(clock: FakeClock, may: bool = True, **config: object) -> tuple[OutlierTracker, list[tuple[float, str]]]:
    ejections: list[tuple[float, str]] = []
    tracker = OutlierTracker(
        OutlierDetection.model_validate(config), clock, lambda: may, lambda s, r: ejections.append((s, r))
    )
    return tracker, ejections


def test_consecutive_failures_eject_for_a_growing_period() -> None:
    clock = FakeClock()
    t, ejections = tracker(clock, consecutive_failures=3, base_ejection_seconds=10, max_ejection_seconds=25)
    for ok in (False, False, True, False, False):
        t.record(ok)
    assert not t.ejected()
    t.record(False)
    assert t.ejected() and t.ejected_for() == 10
    clock.t += 10
    assert not t.ejected()
    for _ in range(3):
        t.record(False)
    assert t.ejected_for() == 20  # the second time: twice as long
    clock.t += 20
    for _ in range(3):
        t.record(False)
    assert t.ejected_for() == 25  # capped
    assert [s for s, _ in ejections] == [10, 20, 25]
    assert ejections[0][1] == "3 consecutive failures"


def test_error_rate_over_the_window_ejects() -> None:
    clock = FakeClock()
    t, ejections = tracker(clock, consecutive_failures=100, error_rate=0.5, window=10)
    for n in range(9):
        t.record(n % 2 == 0)  # 4 failures of 9: the window is not full yet
    assert not t.ejected()
    t.record(False)  # 5 of 10
    assert t.ejected()
    assert ejections[0][1] == "50% of the last 10 calls failed"


def test_the_pool_may_refuse_another_ejection() -> None:
    t, ejections = tracker(FakeClock(), may=False, consecutive_failures=1)
    t.record(False)
    assert not t.ejected() and ejections == []


def test_disabled_never_ejects() -> None:
    t, _ = tracker(FakeClock(), enabled=False, consecutive_failures=1)
    t.record(False)
    assert not t.ejected()
