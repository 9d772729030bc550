"""Upstream sessions never leak between principals (DESIGN.md §3): two principals with real JWTs
from a loopback issuer call a stdio server (each gets a process of its own), a handshake-era
HTTP server (each its own upstream sessions, under load too), and a server configured
`sharing: shared` (one session for both). Also: a principal's process dying mid-call frees its
slots and takes nobody else's session with it, and without authentication everything stays as it
was before pools (one session, one process, the gateway's own).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from toolway.observability.events import UpstreamSessionClosed
from toolway.sessions.pool import Replica
from toolway.testing import (
    RunningGateway,
    RunningHttpUpstream,
    http_upstream,
    running_gateway,
    stdio_upstream_command,
)
from toolway.testing.admin import until
from toolway.testing.issuer import LoopbackIssuer, running_issuer
from toolway.testing.wire import call_tool, text_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

CANONICAL = "https://gw.example.test/mcp"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def issuer() -> AsyncIterator[LoopbackIssuer]:
    async with running_issuer() as running_:
        yield running_


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stateful() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("stateful", era="handshake") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def common() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("common", era="handshake") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    issuer: LoopbackIssuer,
    stateful: RunningHttpUpstream,
    common: RunningHttpUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningGateway]:
    servers = [
        # `sharing` unset (auto): per principal, for stdio and for handshake-era upstreams alike.
        {"name": "local", "transport": "stdio", "command": stdio_upstream_command("local")},
        {
            "name": "stateful",
            "transport": "streamable-http",
            "url": stateful.url,
            "pool": {"max_connections": 9, "max_inflight": 1, "max_waiting": 100},
        },
        {"name": "common", "transport": "streamable-http", "url": common.url, "sharing": "shared"},
        # Room for one principal besides the gateway's own session: principals take turns.
        {"name": "tight", "transport": "streamable-http", "url": stateful.url, "pool": {"max_connections": 2}},
    ]
    auth = {
        "schemes": ["jwt"],
        "jwt": {"issuer": issuer.url, "jwks_url": issuer.jwks_url},
        "oauth": {"resource": CANONICAL},
    }
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store"), auth=auth) as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(issuer: LoopbackIssuer, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.token(sub=subject, aud=CANONICAL, scope='*')}"}


def replica(gw: RunningGateway, server: str) -> Replica:
    pool = gw.gateway.manager.get(server)
    assert pool is not None
    return pool.replicas[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def tool(http: aiohttp.ClientSession, gw: RunningGateway, headers: dict[str, str], name: str, **args: Any) -> str:
    return text_of(await call_tool(http, gw.url, name, args, headers=headers))


async def test_each_principal_gets_its_own_stdio_process(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    own = replica(gateway, "local").conn.pid()  # the gateway's own process (catalog, health)
    pids = {who: await tool(http, gateway, headers, "local__pid") for who, headers in (("a", alice), ("b", bob))}
    assert len({pids["a"], pids["b"], str(own)}) == 3
    assert await tool(http, gateway, alice, "local__pid") == pids["a"]  # the same process again
    assert await tool(http, gateway, bob, "local__pid") == pids["b"]


async def test_principals_never_share_a_handshake_era_session_even_under_load(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession, stateful: RunningHttpUpstream
) -> None:
    principals = {who: bearer(issuer, who) for who in ("carol", "dave")}
    calls = {
        who: [
            asyncio.create_task(call_tool(http, gateway.url, "stateful__session", {"key": "load"}, n, headers))
            for n in range(4)
        ]
        for who, headers in principals.items()
    }
    r = replica(gateway, "stateful")
    await until(lambda: r.inflight == 8, what="eight calls on eight sessions")  # max_inflight 1 each
    async with http.post(f"http://127.0.0.1:{stateful.port}/debug/release?key=load") as resp:
        assert resp.status == 200
    seen = {who: {text_of(a).split()[1] for a in await asyncio.gather(*tasks)} for who, tasks in calls.items()}
    assert len(seen["carol"]) == 4 and len(seen["dave"]) == 4  # one session per call in flight
    assert not seen["carol"] & seen["dave"]  # and none of them used by both
    assert r.sessions.describe()["principals"] == 2


async def test_a_shared_server_serves_both_principals_on_one_session(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    first = await tool(http, gateway, bearer(issuer, "erin"), "common__session")
    second = await tool(http, gateway, bearer(issuer, "frank"), "common__session")
    assert first == second and first.split()[1] != "-"
    assert replica(gateway, "common").sessions.open_count() == 1


async def test_an_idle_principal_session_makes_room_for_another_principal(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    ivan, judy = bearer(issuer, "ivan"), bearer(issuer, "judy")
    r = replica(gateway, "tight")
    closed: list[UpstreamSessionClosed] = []
    gateway.gateway.events.subscribe(UpstreamSessionClosed, closed.append)
    first = await tool(http, gateway, ivan, "tight__session")
    second = await tool(http, gateway, judy, "tight__session")  # ivan's idle session is closed for judy
    assert first != second
    await until(lambda: [e.reason for e in closed if e.server == "tight"] == ["evicted"], what="ivan's closed")
    assert closed[-1].principal == "jwt:ivan"
    third = await tool(http, gateway, ivan, "tight__session")
    assert third not in (first, second)  # a new one: ivan's old session was closed, judy's is not his
    assert r.sessions.open_count() == 2


async def test_a_principal_process_dying_mid_call_frees_its_slots_and_no_one_elses_session(
    gateway: RunningGateway, issuer: LoopbackIssuer, http: aiohttp.ClientSession
) -> None:
    grace, other = bearer(issuer, "grace"), bearer(issuer, "heidi")
    r = replica(gateway, "local")
    closed: list[UpstreamSessionClosed] = []
    gateway.gateway.events.subscribe(UpstreamSessionClosed, closed.append)
    before = await tool(http, gateway, grace, "local__pid")
    others = await tool(http, gateway, other, "local__pid")
    slow = asyncio.create_task(call_tool(http, gateway.url, "local__slow", {"seconds": 30}, 1, grace))
    await until(lambda: r.inflight == 1, what="the slow call in flight")
    crashed = await call_tool(http, gateway.url, "local__crash", {}, 2, grace)  # the same process exits
    assert crashed["error"]["data"]["cause"] in ("reset", "unavailable")
    assert (await slow)["error"]["data"]["cause"] in ("reset", "unavailable")
    await until(lambda: any(e.reason == "lost" for e in closed), what="grace's session closed as lost")
    assert r.inflight == 0
    await until(lambda: not alive(int(before)), what="grace's old process gone")
    after = await tool(http, gateway, grace, "local__pid")
    assert after not in (before, others)  # a new process of grace's own
    assert await tool(http, gateway, other, "local__pid") == others  # heidi's untouched


async def test_without_authentication_everything_uses_the_gateways_own_session(tmp_path: Path) -> None:
    servers = [{"name": "solo", "transport": "stdio", "command": stdio_upstream_command("solo")}]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
        r = replica(gw, "solo")
        pids = {text_of(await call_tool(http, gw.url, "solo__pid", {}, n)) for n in range(3)}
        assert pids == {str(r.conn.pid())} and r.sessions.open_count() == 1
