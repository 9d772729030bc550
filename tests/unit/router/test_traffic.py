"""Kill switches and version weights: validated, reversible, and what share each version gets."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from toolway.observability.events import Events, TrafficChanged
from toolway.protocol.errors import Killed, to_error
from toolway.router.traffic import Traffic, TrafficError

VERSIONS = ["v1", "v1", "v2"]  # two v1 replicas, one v2


def test_kill_and_revive_a_tool_and_a_server() -> None:
    events = Events()
    seen: list[TrafficChanged] = []
    events.subscribe(TrafficChanged, seen.append)
    traffic = Traffic(events)
    traffic.check("calc", "add")
    assert traffic.kill("tool", "calc__add")
    assert not traffic.kill("tool", "calc__add")  # already off
    with pytest.raises(Killed) as info:
        traffic.check("calc", "add")
    assert to_error(info.value)["data"] == {"server": "calc", "tool": "add", "cause": "killed", "retryable": False}
    traffic.check("calc", "sub")
    traffic.check("other", "add")
    assert traffic.revive("tool", "calc__add")
    traffic.check("calc", "add")
    traffic.kill("server", "calc")
    with pytest.raises(Killed, match="toolway kill server"):
        traffic.check("calc", None)
    traffic.revive("server", "calc")
    traffic.check("calc", None)
    assert [(e.action, e.server) for e in seen] == [
        ("kill", "calc__add"),
        ("revive", "calc__add"),
        ("kill", "calc"),
        ("revive", "calc"),
    ]


@pytest.mark.parametrize(("kind", "name"), [("tool", "calc"), ("tool", "__x"), ("replica", "calc")])
def test_bad_kill_targets_are_refused(kind: str, name: str) -> None:
    with pytest.raises(TrafficError):
        Traffic().kill(kind, name)


def test_shares_name_some_versions_and_split_the_rest() -> None:
    traffic = Traffic()
    assert traffic.shares("s", VERSIONS) == {"v1": 0.5, "v2": 0.5}
    traffic.set_weights("s", {"v2": 10}, VERSIONS)
    assert traffic.shares("s", VERSIONS) == {"v1": 0.9, "v2": 0.1}
    traffic.set_weights("s", {"v1": 0, "v2": 100}, VERSIONS)
    assert traffic.shares("s", VERSIONS) == {"v1": 0.0, "v2": 1.0}
    traffic.set_weights("s", {"v1": 30, "v2": 30}, VERSIONS)  # all named, short of 100: relative
    assert traffic.shares("s", VERSIONS) == {"v1": 0.5, "v2": 0.5}
    traffic.set_weights("s", {}, VERSIONS)
    assert traffic.shares("s", VERSIONS) == {"v1": 0.5, "v2": 0.5}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"v3": 10}, "no version 'v3'"),
        ({"v2": 101}, "integer from 0 to 100"),
        ({"v2": "10"}, "integer from 0 to 100"),
        ({"v2": True}, "integer from 0 to 100"),
        ({"v1": 60, "v2": 50}, "over 100"),
    ],
)
def test_bad_weights_are_refused(weights: dict[str, object], message: str) -> None:
    traffic = Traffic()
    with pytest.raises(TrafficError, match=message):
        traffic.set_weights("s", weights, VERSIONS)
    assert traffic.weights == {}


def test_choose_version_follows_the_split_within_tolerance() -> None:
    traffic = Traffic()
    traffic.set_weights("s", {"v2": 10}, VERSIONS)
    rng = random.Random(3)
    picks = Counter(traffic.choose_version("s", VERSIONS, {"v1", "v2"}, rng) for _ in range(2000))
    assert abs(picks["v2"] / 2000 - 0.10) <= 0.03


def test_a_version_without_routable_replicas_gets_no_calls() -> None:
    traffic = Traffic()
    traffic.set_weights("s", {"v2": 10}, VERSIONS)
    rng = random.Random(0)
    assert {traffic.choose_version("s", VERSIONS, {"v1"}, rng) for _ in range(50)} == {"v1"}
    traffic.set_weights("s", {"v1": 0, "v2": 100}, VERSIONS)
    assert traffic.choose_version("s", VERSIONS, {"v1"}, rng) is None  # the caller then uses what is left
