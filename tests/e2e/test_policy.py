"""Policies through a real gateway, in front of real fixture upstreams, called by the official SDK.

Done when: a Rego policy denying a tool outside 09:00-17:00 denies at 18:00 with an injected
clock, and in shadow mode logs the same decision but lets the call through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from mcp import Client, MCPError
from structlog.testing import capture_logs

from toolway.app import StartupError
from toolway.clock import FixedWallClock
from toolway.policy.engine import PolicyLoadError
from toolway.testing import RunningHttpUpstream, http_upstream, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")
logging.getLogger().setLevel(logging.WARNING)

PARIS = ZoneInfo("Europe/Paris")
ERAS = ["legacy", "2026-07-28"]
POLICY_DENIED = -32004
OFFICE_HOURS = """\
package toolway.hours

import rego.v1

default allow := false

# Only the web server's tools are restricted.
allow if input.server != "web"

allow if {
	input.time.hour >= 9
	input.time.hour < 17
}

reason := msg if {
	not allow
	msg := sprintf(
		"%s is allowed only 09:00-17:00 (%s); it is %02d:%02d",
		[input.target, input.time.timezone, input.time.hour, input.time.minute],
	)
}
"""
DENIED = "web/echo is allowed only 09:00-17:00 (Europe/Paris); it is 18:00"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstreams() -> AsyncIterator[dict[str, RunningHttpUpstream]]:
    async with http_upstream("web") as web, http_upstream("files", era="handshake") as files:
        yield {"web": web, "files": files}


def servers(upstreams: dict[str, RunningHttpUpstream]) -> list[dict[str, Any]]:
    return [{"name": name, "transport": "streamable-http", "url": u.url} for name, u in upstreams.items()]


def hours_policy(tmp_path: Path, mode: str) -> dict[str, Any]:
    file = tmp_path / "hours.rego"
    file.write_text(OFFICE_HOURS)
    return {
        "timezone": "Europe/Paris",
        "decision_log": str(tmp_path / "decisions.jsonl"),
        "policies": [{"name": "office-hours", "file": str(file), "package": "toolway.hours", "mode": mode}],
    }


def decisions(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def text(result: Any) -> str:
    return str(result.content[0].text)


@pytest.mark.parametrize("mode", ERAS)
async def test_enforce_denies_at_18_00_and_allows_at_10_00(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path, mode: str
) -> None:
    wall = FixedWallClock(datetime(2026, 11, 30, 18, 0, tzinfo=PARIS))
    policy = hours_policy(tmp_path, "enforce")
    async with running_gateway(servers=servers(upstreams), store_dir=tmp_path, wall_clock=wall, policy=policy) as gw:
        async with Client(gw.url, mode=mode) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("web__echo", {"text": "after hours"})
            assert caught.value.error.code == POLICY_DENIED
            assert caught.value.error.message == f"denied by policy 'office-hours': {DENIED}"
            assert caught.value.error.data == {"policy": "office-hours", "reason": DENIED}
            assert text(await client.call_tool("files__echo", {"text": "not restricted"})) == "not restricted"
            # Lists are not filtered by policy: the tool is still listed at 18:00.
            assert "web__echo" in {tool.name for tool in (await client.list_tools()).tools}
            wall.set(datetime(2026, 11, 30, 10, 0, tzinfo=PARIS))
            assert text(await client.call_tool("web__echo", {"text": "office hours"})) == "office hours"
    logged = decisions(tmp_path)
    assert [(r["target"], r["effect"], r["reason"]) for r in logged] == [
        ("web/echo", "deny", DENIED),
        ("files/echo", "allow", None),
        ("web/echo", "allow", None),
    ]
    assert logged[0]["policy"] == "office-hours" and logged[0]["mode"] == "enforce"
    assert logged[0]["time"] == "2026-11-30T17:00:00Z" and logged[0]["principal"] is None
    assert "arguments" not in logged[0] and "after hours" not in json.dumps(logged)


async def test_shadow_logs_the_same_decision_and_lets_the_call_through(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path
) -> None:
    wall = FixedWallClock(datetime(2026, 11, 30, 18, 0, tzinfo=PARIS))
    policy = hours_policy(tmp_path, "shadow")
    with capture_logs() as logs:
        async with running_gateway(
            servers=servers(upstreams), store_dir=tmp_path, wall_clock=wall, policy=policy
        ) as gw:
            async with Client(gw.url) as client:
                assert text(await client.call_tool("web__echo", {"text": "after hours"})) == "after hours"
    [record] = decisions(tmp_path)
    assert (record["allow"], record["effect"], record["mode"], record["reason"]) == (
        False,
        "shadow-deny",
        "shadow",
        DENIED,
    )
    logged = [entry for entry in logs if entry["event"] == "policy decision"]
    assert [(e["effect"], e["reason"]) for e in logged] == [("shadow-deny", DENIED)]


async def test_built_in_rules_allow_list(upstreams: dict[str, RunningHttpUpstream], tmp_path: Path) -> None:
    rules = [{"tools": ["web/echo", "files/*"], "prompts": ["web/greet"]}]
    policy = {"policies": [{"name": "allow-list", "default": "deny", "rules": rules}]}
    async with running_gateway(servers=servers(upstreams), store_dir=tmp_path, policy=policy) as gw:
        async with Client(gw.url) as client:
            assert text(await client.call_tool("web__echo", {"text": "listed"})) == "listed"
            assert text(await client.call_tool("files__add", {"a": 1, "b": 2})) == "3"
            with pytest.raises(MCPError) as caught:
                await client.call_tool("web__add", {"a": 1, "b": 2})
            assert caught.value.error.code == POLICY_DENIED
            assert caught.value.error.message == (
                "denied by policy 'allow-list': web/add: no rule covers it and the policy denies by default"
            )
            assert (await client.get_prompt("web__greet", {"name": "Ada"})).messages
            with pytest.raises(MCPError, match="denied by policy 'allow-list': files/greet: no rule covers it"):
                await client.get_prompt("files__greet", {"name": "Ada"})
            # Resource reads are covered by no rule: the policy's default applies to them too.
            with pytest.raises(MCPError, match="denied by policy 'allow-list': ui://files/page: no rule covers it"):
                await client.read_resource("ui://files/page")


async def test_a_rego_policy_on_resource_reads_sees_the_owning_server(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path
) -> None:
    file = tmp_path / "resources.rego"
    file.write_text(
        "package toolway.resources\nimport rego.v1\ndefault allow := true\n"
        'allow := false if { input.method == "resources/read"; input.server == "web" }\n'
        'reason := "web resources are private"\n'
    )
    policy = {
        "decision_log": str(tmp_path / "decisions.jsonl"),
        "policies": [{"name": "resources", "file": str(file), "package": "toolway.resources"}],
    }
    async with running_gateway(servers=servers(upstreams), store_dir=tmp_path, policy=policy) as gw:
        async with Client(gw.url) as client:
            assert (await client.read_resource("ui://files/page")).contents
            with pytest.raises(MCPError, match="denied by policy 'resources': web resources are private"):
                await client.read_resource("ui://web/page")
    assert [(r["server"], r["target"], r["allow"]) for r in decisions(tmp_path)] == [
        ("files", "ui://files/page", True),
        ("web", "ui://web/page", False),
    ]


async def test_an_edited_policy_file_is_picked_up_and_a_broken_edit_keeps_the_old_one(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path
) -> None:
    file = tmp_path / "live.rego"
    file.write_text("package toolway.policy\nimport rego.v1\ndefault allow := true\n")
    policy = {"reload_seconds": 0.05, "policies": [{"name": "live", "file": str(file)}]}
    async with running_gateway(servers=servers(upstreams), store_dir=tmp_path, policy=policy) as gw:
        engine = gw.gateway.policy
        async with Client(gw.url) as client:
            assert text(await client.call_tool("web__echo", {"text": "a"})) == "a"
            seen = engine.generation
            file.write_text(
                'package toolway.policy\nimport rego.v1\ndefault allow := false\nreason := "closed for maintenance"\n'
            )
            async with asyncio.timeout(10):
                seen = await engine.wait_generation(seen)
            with pytest.raises(MCPError, match="denied by policy 'live': closed for maintenance"):
                await client.call_tool("web__echo", {"text": "b"})
            with capture_logs() as logs:
                file.write_text("package toolway.policy\nallow if {\n")
                async with asyncio.timeout(10):
                    await engine.wait_generation(seen)
            assert any(e["event"] == "policy reload failed; the previous version stays in force" for e in logs)
            with pytest.raises(MCPError, match="closed for maintenance"):
                await client.call_tool("web__echo", {"text": "c"})


async def test_anonymous_callers_have_a_null_identity(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path
) -> None:
    file = tmp_path / "anon.rego"
    file.write_text(
        "package toolway.policy\nimport rego.v1\ndefault allow := false\n"
        'allow if { input.identity == null; input.request.transport == "streamable-http"; input.tool == "echo" }\n'
    )
    policy = {"policies": [{"name": "anon", "file": str(file)}]}
    async with running_gateway(servers=servers(upstreams), store_dir=tmp_path, policy=policy) as gw:
        async with Client(gw.url) as client:
            assert text(await client.call_tool("web__echo", {"text": "x"})) == "x"
            with pytest.raises(MCPError, match="denied by policy 'anon'"):
                await client.call_tool("web__add", {"a": 1, "b": 2})


async def test_a_policy_that_does_not_compile_stops_start_up(
    upstreams: dict[str, RunningHttpUpstream], tmp_path: Path
) -> None:
    file = tmp_path / "bad.rego"
    file.write_text("package toolway.policy\nallow if {\n")
    with pytest.raises(PolicyLoadError, match=rf"^policy 'bad': {file}: 2:10: "):
        async with running_gateway(
            servers=servers(upstreams), store_dir=tmp_path, policy={"policies": [{"name": "bad", "file": str(file)}]}
        ):
            pass


async def test_an_upstream_at_a_metadata_address_is_refused_at_start_up(tmp_path: Path) -> None:
    server = {"name": "meta", "transport": "streamable-http", "url": "http://169.254.169.254/mcp"}
    with pytest.raises(StartupError) as caught:
        async with running_gateway(servers=[server], store_dir=tmp_path):
            pass
    assert str(caught.value) == (
        "refusing to start: upstream http://169.254.169.254/mcp: 169.254.169.254 is a cloud metadata address;"
        " add 169.254.169.254 (or a CIDR holding it) to egress.allow to reach it"
    )
