"""The policy stage on calls built by hand: the input document with an identity, and what it guards."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.auth.identity import Identity
from toolway.config.policy import PolicyConfig
from toolway.observability.events import Events
from toolway.pipeline.context import Call
from toolway.pipeline.policy import PolicyFilter
from toolway.policy.decision_log import PolicyDecided
from toolway.policy.document import call_document
from toolway.policy.engine import PolicyEngine
from toolway.protocol.errors import PolicyDenied

RESEARCH = """\
package toolway.policy

import rego.v1

default allow := false

allow if {
	input.identity.team == "research"
	"tools:call:web/*" in input.identity.scopes
	input.identity.claims.tier == "gold"
}

reason := "web tools are for the research team" if not allow
"""
ALICE = Identity("alice", "jwt", team="research", scopes=frozenset({"tools:call:web/*"}), claims={"tier": "gold"})


def call(method: str = "tools/call", params: dict[str, Any] | None = None, **extra: Any) -> Call:
    return Call(
        method=method,
        params=params if params is not None else {"name": "web__search", "arguments": {"q": "x"}},
        era="modern",
        protocol_version="2026-07-28",
        client_capabilities={},
        client_info=None,
        request_id="req-1",
        client="127.0.0.1:5000",
        **extra,
    )


def engine(tmp_path: Any, mode: str = "enforce") -> PolicyEngine:
    file = tmp_path / "p.rego"
    file.write_text(RESEARCH)
    return PolicyEngine(
        PolicyConfig.model_validate({"policies": [{"name": "research", "file": str(file), "mode": mode}]})
    )


async def reached(_: Call) -> dict[str, Any]:
    return {"reached": True}


async def test_identity_team_scopes_and_claims_reach_the_policy(tmp_path: Any) -> None:
    events = Events()
    seen: list[PolicyDecided] = []
    events.subscribe(PolicyDecided, seen.append)
    stage = PolicyFilter(engine(tmp_path), events, lambda uri: None)
    assert await stage(call(identity=ALICE), reached) == {"reached": True}
    bob = Identity("bob", "api_key", team="sales")
    with pytest.raises(PolicyDenied) as caught:
        await stage(call(identity=bob), reached)
    assert (caught.value.policy, caught.value.reason) == ("research", "web tools are for the research team")
    with pytest.raises(PolicyDenied):
        await stage(call(identity=None), reached)  # anonymous
    assert [d.allow for event in seen for d in event.decisions] == [True, False, False]
    assert seen[0].document["identity"] == {
        "subject": "alice",
        "scheme": "jwt",
        "team": "research",
        "roles": [],
        "scopes": ["tools:call:web/*"],
        "claims": {"tier": "gold"},
    }


async def test_shadow_mode_lets_the_denied_call_through(tmp_path: Any) -> None:
    stage = PolicyFilter(engine(tmp_path, "shadow"), Events(), lambda uri: None)
    assert await stage(call(identity=None), reached) == {"reached": True}


@pytest.mark.parametrize("method", ["tools/list", "prompts/list", "resources/list", "ping", "completion/complete"])
async def test_only_tool_calls_prompt_gets_and_resource_reads_are_guarded(tmp_path: Any, method: str) -> None:
    events = Events()
    seen: list[PolicyDecided] = []
    events.subscribe(PolicyDecided, seen.append)
    stage = PolicyFilter(engine(tmp_path), events, lambda uri: None)
    assert await stage(call(method, {}), reached) == {"reached": True}
    assert seen == []


def test_the_document_for_each_guarded_method_and_endpoint() -> None:
    time = {"hour": 1}
    doc = call_document(call(), time, lambda uri: None)
    assert (doc["server"], doc["tool"], doc["name"], doc["target"], doc["arguments"]) == (
        "web",
        "search",
        "search",
        "web/search",
        {"q": "x"},
    )
    assert doc["request"] == {
        "id": "req-1",
        "client": "127.0.0.1:5000",
        "transport": "streamable-http",
        "era": "modern",
        "protocol_version": "2026-07-28",
        "endpoint": "/mcp",
    }
    scoped = call_document(call(params={"name": "search"}, scope="web"), time, lambda uri: None)
    assert (scoped["server"], scoped["tool"], scoped["request"]["endpoint"]) == ("web", "search", "/servers/web")
    prompt = call_document(call("prompts/get", {"name": "files__greet", "arguments": {"name": "Ada"}}), time, str)
    assert (prompt["server"], prompt["prompt"], prompt["tool"], prompt["target"]) == (
        "files",
        "greet",
        None,
        "files/greet",
    )
    read = call_document(call("resources/read", {"uri": "ui://docs/page"}), time, lambda uri: "docs")
    assert (read["server"], read["uri"], read["target"], read["name"]) == (
        "docs",
        "ui://docs/page",
        "ui://docs/page",
        None,
    )
    assert "headers" not in doc  # never: they would carry the client's token into the decision log
