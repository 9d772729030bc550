"""Policies on authenticated callers, and the caller's token never reaching an upstream.

A real issuer serves its JWKS on loopback and signs the tokens; the official SDK presents them
as `Authorization: Bearer …`. The scopes stage runs before the policy stage, so a policy sees
only calls the caller's scopes allow, with the caller's identity. Every fixture upstream
(Streamable HTTP, HTTP+SSE, WebSocket) records the headers it receives: the caller's token is
in none of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from toolway.testing import running_gateway
from toolway.testing.issuer import LoopbackIssuer, running_issuer
from toolway.testing.processes import start_http_upstream
from toolway.testing.recording import header_values, read_recorded

logging.getLogger().setLevel(logging.WARNING)

CANONICAL = "https://gw.example.test/mcp"
TEAM_POLICY = """\
package toolway.teams

import rego.v1

default allow := false

# Research may call anything its scopes allow; others only echo, and only with a gold tier claim.
allow if input.identity.team == "research"

allow if {
	input.tool == "echo"
	input.identity.claims.tier == "gold"
}

reason := msg if {
	not allow
	msg := sprintf("%s may not call %s", [input.identity.subject, input.target])
}
"""
UPSTREAMS = {"plain": ("streamable-http", "streamable-http"), "old": ("sse", "sse"), "sock": ("ws", "websocket")}


@contextlib.asynccontextmanager
async def bearer_client(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client), mode=mode) as client:
            yield client


def token(issuer: LoopbackIssuer, subject: str, team: str, scope: str, **claims: Any) -> str:
    return issuer.token(sub=subject, aud=CANONICAL, team=team, scope=scope, **claims)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_policies_see_authenticated_identities_and_upstreams_never_see_their_tokens(
    tmp_path: Path, mode: str
) -> None:
    policy_file = tmp_path / "teams.rego"
    policy_file.write_text(TEAM_POLICY)
    started = {}
    async with running_issuer() as issuer:
        try:
            for name, (transport, _) in UPSTREAMS.items():
                started[name] = await start_http_upstream(
                    name, transport=transport, record_headers=str(tmp_path / f"{name}.jsonl")
                )
            servers = [
                {"name": name, "transport": UPSTREAMS[name][1], "url": upstream.url}
                for name, upstream in started.items()
            ]
            auth = {
                "schemes": ["jwt"],
                "jwt": {"issuer": issuer.url, "jwks_url": issuer.jwks_url},
                "oauth": {"resource": CANONICAL},
            }
            policy = {
                "decision_log": str(tmp_path / "decisions.jsonl"),
                "policies": [{"name": "teams", "file": str(policy_file), "package": "toolway.teams"}],
            }
            researcher = token(issuer, "rita", "research", "tools:call:*")
            gold = token(issuer, "gus", "sales", "tools:call:*", tier="gold")
            narrow = token(issuer, "nora", "research", "tools:call:plain/*")
            async with running_gateway(servers=servers, store_dir=tmp_path, auth=auth, policy=policy) as gw:
                async with bearer_client(gw.url, researcher, mode) as client:
                    for name in UPSTREAMS:
                        assert (await client.call_tool(f"{name}__add", {"a": 2, "b": 3})).content[0].text == "5"  # type: ignore[union-attr]
                async with bearer_client(gw.url, gold, mode) as client:
                    assert (await client.call_tool("sock__echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
                    with pytest.raises(MCPError) as caught:
                        await client.call_tool("old__add", {"a": 1, "b": 1})
                    assert caught.value.error.code == -32004
                    assert caught.value.error.message == "denied by policy 'teams': gus may not call old/add"
                async with bearer_client(gw.url, narrow, mode) as client:
                    # The scopes stage refuses first: the policy never sees a call outside the scopes.
                    with pytest.raises(MCPError) as caught:
                        await client.call_tool("old__add", {"a": 1, "b": 1})
                    assert caught.value.error.code == -32003
        finally:
            for upstream in started.values():
                await upstream.stop()
    logged = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(r["principal"], r["scheme"], r["target"], r["allow"]) for r in logged] == [
        ("rita", "jwt", "plain/add", True),
        ("rita", "jwt", "old/add", True),
        ("rita", "jwt", "sock/add", True),
        ("gus", "jwt", "sock/echo", True),
        ("gus", "jwt", "old/add", False),
    ]
    for name in UPSTREAMS:
        received = read_recorded(tmp_path / f"{name}.jsonl")
        assert received, name
        assert header_values(received, "Authorization") == [], name  # not the caller's, and none of its own
        for secret in (researcher, gold, narrow):
            assert secret not in json.dumps(received)
