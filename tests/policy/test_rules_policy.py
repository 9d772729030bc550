"""Built-in YAML rules compile to Rego and decide on the same input documents as Rego files."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from toolway.config.policy import PolicyEntry
from toolway.policy.document import time_document
from toolway.policy.rules import compile_rules, rules_to_rego

PARIS = ZoneInfo("Europe/Paris")


def entry(rules: list[dict[str, Any]], default: str = "allow") -> PolicyEntry:
    return PolicyEntry.model_validate({"name": "builtin", "rules": rules, "default": default})


def doc(
    target: str, *, hour: int = 10, day: int = 30, identity: dict[str, Any] | None = None, method: str = "tools/call"
) -> dict[str, Any]:
    # 2026-11-30 is a Monday.
    when = datetime(2026, 11, day, hour, 0, tzinfo=PARIS)
    return {"method": method, "target": target, "identity": identity, "time": time_document(when, PARIS)}


def agent(subject: str, team: str | None = None, roles: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"subject": subject, "team": team, "roles": list(roles), "scopes": [], "scheme": "api_key", "claims": {}}


def test_allow_list_per_tool_with_default_deny() -> None:
    policy = compile_rules(entry([{"tools": ["web/search", "files/read_*"]}], default="deny"))
    assert policy.evaluate(doc("web/search")).allow is True
    assert policy.evaluate(doc("files/read_text")).allow is True
    verdict = policy.evaluate(doc("web/delete"))
    assert (verdict.allow, verdict.reason) == (False, "web/delete: no rule covers it and the policy denies by default")


def test_a_star_stays_within_its_segment_and_star_alone_is_every_tool() -> None:
    policy = compile_rules(entry([{"tools": ["web*/x"]}], default="deny"))
    assert policy.evaluate(doc("web2/x")).allow is True
    assert policy.evaluate(doc("web/a/x")).allow is False
    everything = compile_rules(entry([{"tools": ["*"], "teams": ["ops"]}], default="allow"))
    assert everything.evaluate(doc("any/tool", identity=agent("a", "ops"))).allow is True
    assert everything.evaluate(doc("any/tool", identity=agent("b", "dev"))).allow is False


def test_who_subjects_teams_or_roles_and_anonymous_callers() -> None:
    policy = compile_rules(
        entry([{"tools": ["web/*"], "subjects": ["alice"], "teams": ["research"], "roles": ["admin"]}])
    )
    assert policy.evaluate(doc("web/x", identity=agent("alice"))).allow is True
    assert policy.evaluate(doc("web/x", identity=agent("bob", "research"))).allow is True
    assert policy.evaluate(doc("web/x", identity=agent("carol", roles=("viewer", "admin")))).allow is True
    assert policy.evaluate(doc("web/x", identity=agent("dave", "sales"))).allow is False
    verdict = policy.evaluate(doc("web/x", identity=None))
    assert verdict.allow is False
    assert verdict.reason == (
        "web/x is not allowed for anonymous at mon 10:00 (Europe/Paris); rules covering it:"
        " rule 1: tools web/* for subjects alice for teams research for roles admin"
    )
    assert policy.evaluate(doc("files/x", identity=None)).allow is True  # not covered: default allow


def test_a_time_of_day_window_in_the_configured_zone_and_days() -> None:
    policy = compile_rules(entry([{"tools": ["web/*"], "hours": "09:00-17:00", "days": ["mon", "tue"]}]))
    assert policy.evaluate(doc("web/x", hour=9)).allow is True
    assert policy.evaluate(doc("web/x", hour=16)).allow is True
    assert policy.evaluate(doc("web/x", hour=17)).allow is False
    assert policy.evaluate(doc("web/x", hour=18)).allow is False
    assert policy.evaluate(doc("web/x", hour=10, day=29)).allow is False  # a Sunday


def test_a_window_that_spans_midnight() -> None:
    policy = compile_rules(entry([{"tools": ["batch/*"], "hours": "22:00-06:00"}]))
    assert [policy.evaluate(doc("batch/run", hour=h)).allow for h in (21, 22, 23, 0, 5, 6, 12)] == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_any_covering_rule_may_admit() -> None:
    policy = compile_rules(
        entry([{"tools": ["web/*"], "teams": ["ops"]}, {"tools": ["web/search"], "hours": "09:00-17:00"}])
    )
    assert policy.evaluate(doc("web/search", hour=10, identity=agent("x", "dev"))).allow is True
    assert policy.evaluate(doc("web/search", hour=20, identity=agent("x", "ops"))).allow is True
    verdict = policy.evaluate(doc("web/search", hour=20, identity=agent("x", "dev")))
    assert verdict.allow is False
    assert verdict.reason is not None and "rule 1: tools web/* for teams ops" in verdict.reason
    assert "rule 2: tools web/search 09:00-17:00" in verdict.reason


def test_prompts_are_covered_by_prompt_patterns_only() -> None:
    policy = compile_rules(entry([{"prompts": ["web/greet"]}], default="deny"))
    assert policy.evaluate(doc("web/greet", method="prompts/get")).allow is True
    assert policy.evaluate(doc("web/greet", method="tools/call")).allow is False


def test_the_generated_rego_is_readable() -> None:
    text = rules_to_rego(entry([{"tools": ["web/*"], "hours": "09:00-17:00"}]))
    assert "package toolway.rules" in text
    assert "# rule 1: tools web/* 09:00-17:00" in text


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"teams": ["x"]}, "a rule must name the tools or prompts it covers"),
        ({"tools": ["search"]}, "'search' must be `server/name`"),
        ({"tools": ["a/*"], "hours": "9-17"}, "must be a window like '09:00-17:00'"),
        ({"tools": ["a/*"], "hours": "10:00-10:00"}, "an empty window"),
        ({"tools": ["a/*"], "days": ["monday"]}, "Input should be 'mon'"),
    ],
)
def test_bad_rules_are_config_errors(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        entry([rule])
