"""Balancing strategies, on a seeded RNG, with statistical tolerances of five standard deviations."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from toolway.router import balance


@dataclass
class R:
    id: str
    weight: int = 1
    inflight: int = 0


def state(*replicas: R, seed: int = 1) -> balance.State:
    return balance.State(random.Random(seed), [r.id for r in replicas])


def within(observed: int, total: int, share: float) -> bool:
    return abs(observed - total * share) <= 5 * math.sqrt(total * share * (1 - share))


def test_round_robin_takes_turns() -> None:
    rs = [R("a"), R("b"), R("c")]
    st = state(*rs)
    assert [balance.round_robin(rs, st, None).id for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_least_inflight_picks_the_idlest_and_breaks_ties_at_random() -> None:
    rs = [R("a", inflight=3), R("b", inflight=1), R("c", inflight=1)]
    st = state(*rs)
    picks = Counter(balance.least_inflight(rs, st, None).id for _ in range(1000))
    assert set(picks) == {"b", "c"}
    assert within(picks["b"], 1000, 0.5)


def test_weighted_follows_weights_and_skips_zero() -> None:
    rs = [R("a", weight=1), R("b", weight=4), R("c", weight=0)]
    st = state(*rs)
    picks = Counter(balance.weighted(rs, st, None).id for _ in range(5000))
    assert picks["c"] == 0
    assert within(picks["a"], 5000, 0.2) and within(picks["b"], 5000, 0.8)


def test_weighted_with_every_weight_zero_is_uniform() -> None:
    rs = [R("a", weight=0), R("b", weight=0)]
    st = state(*rs)
    picks = Counter(balance.weighted(rs, st, None).id for _ in range(2000))
    assert within(picks["a"], 2000, 0.5)


def test_random_two_choices_prefers_the_less_loaded_of_two() -> None:
    rs = [R("a", inflight=5), R("b", inflight=0), R("c", inflight=0)]
    st = state(*rs)
    picks = Counter(balance.random_two_choices(rs, st, None).id for _ in range(3000))
    # "a" wins only against itself, which two distinct choices never are.
    assert picks["a"] == 0
    assert within(picks["b"], 3000, 0.5)
    assert balance.random_two_choices([rs[0]], st, None) is rs[0]


def test_consistent_hash_is_stable_and_moves_only_the_keys_of_a_missing_replica() -> None:
    rs = [R("a"), R("b"), R("c")]
    st = state(*rs)
    keys = [f"user-{n}" for n in range(300)]
    before = {k: balance.consistent_hash(rs, st, k).id for k in keys}
    assert before == {k: balance.consistent_hash(rs, st, k).id for k in keys}
    spread = Counter(before.values())
    assert all(within(spread[r.id], 300, 1 / 3) for r in rs), spread
    without_b = [rs[0], rs[2]]
    after = {k: balance.consistent_hash(without_b, st, k).id for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "b")
    assert all(after[k] != "b" for k in keys)


def test_consistent_hash_without_a_key_falls_back_to_least_inflight() -> None:
    rs = [R("a", inflight=2), R("b", inflight=0)]
    assert balance.consistent_hash(rs, state(*rs), None).id == "b"


@pytest.mark.parametrize("strategy", sorted(balance.STRATEGIES))
def test_every_strategy_returns_one_of_the_candidates(strategy: str) -> None:
    rs = [R("a"), R("b")]
    pick = balance.STRATEGIES[strategy]  # type: ignore[index]
    assert pick(rs, state(*rs), "k") in rs
