"""Load-balancing strategies: which of a server's routable replicas takes a call.

Every strategy gets the candidates (already filtered for health, draining and
version) and returns one. Randomness comes from an injected `random.Random`, so
tests seed it; `consistent_hash` hashes a key with BLAKE2b onto a ring of virtual
nodes, so a key keeps its replica while the set of replicas is stable and only
the keys of a replica that leaves move.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from toolway.config.routing import Strategy

_VNODES = 64  # virtual nodes per replica on the hash ring: an even spread with few replicas


class Candidate(Protocol):
    """What a strategy needs to know about a replica."""

    id: str
    weight: int

    @property
    def inflight(self) -> int: ...


Pick = Callable[[Sequence[Any], "State", str | None], Any]


class State:
    """Per-pool balancing state: the RNG, the round-robin position, the hash ring over every
    replica id of the pool (not only the healthy ones, so a replica that comes back gets
    its own keys back)."""

    def __init__(self, rng: random.Random, replica_ids: Sequence[str]) -> None:
        self.rng = rng
        self.cursor = -1
        points = sorted((_hash(f"{rid}#{n}"), rid) for rid in replica_ids for n in range(_VNODES))
        self.points = [p for p, _ in points]
        self.owners = [rid for _, rid in points]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def least_inflight(candidates: Sequence[Any], state: State, key: str | None) -> Any:
    """The replica with the fewest calls in flight; ties broken at random (so idle pools spread)."""
    fewest = min(c.inflight for c in candidates)
    tied = [c for c in candidates if c.inflight == fewest]
    return tied[0] if len(tied) == 1 else state.rng.choice(tied)


def round_robin(candidates: Sequence[Any], state: State, key: str | None) -> Any:
    state.cursor = (state.cursor + 1) % (1 << 30)
    return candidates[state.cursor % len(candidates)]


def weighted(candidates: Sequence[Any], state: State, key: str | None) -> Any:
    """At random, in proportion to each replica's `weight` (all zero: uniformly)."""
    weights = [c.weight for c in candidates]
    if not any(weights):
        return state.rng.choice(candidates)
    return state.rng.choices(candidates, weights=weights)[0]


def random_two_choices(candidates: Sequence[Any], state: State, key: str | None) -> Any:
    """Two distinct replicas at random; the one with fewer calls in flight (the power of two choices)."""
    if len(candidates) == 1:
        return candidates[0]
    a, b = state.rng.sample(list(candidates), 2)
    return a if a.inflight <= b.inflight else b


def consistent_hash(candidates: Sequence[Any], state: State, key: str | None) -> Any:
    """The first candidate clockwise from the key's point on the ring; no key: least in flight."""
    if key is None:
        return least_inflight(candidates, state, key)
    by_id = {c.id: c for c in candidates}
    points, owners = state.points, state.owners
    start = bisect.bisect(points, _hash(key))
    for offset in range(len(points)):
        owner = by_id.get(owners[(start + offset) % len(points)])
        if owner is not None:
            return owner
    return candidates[0]


STRATEGIES: dict[Strategy, Pick] = {
    "least_inflight": least_inflight,
    "round_robin": round_robin,
    "weighted": weighted,
    "random_two_choices": random_two_choices,
    "consistent_hash": consistent_hash,
}
