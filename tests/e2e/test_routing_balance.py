"""Load balancing over real replicas: three fixture upstream processes behind each logical server.

Which replica answered is the `replica` tool's result (each process is named r0, r1, r2).
Random strategies run on the dispatcher's RNG, seeded per test; tolerances are five
binomial standard deviations, so a correct balancer fails them about once in a million.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from toolway.testing import (
    RunningGateway,
    RunningHttpUpstream,
    http_upstream,
    running_gateway,
    stdio_upstream_command,
)
from toolway.testing.wire import call_tool, modern_request, text_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = ("r0", "r1", "r2")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas() -> AsyncIterator[list[RunningHttpUpstream]]:
    async with http_upstream("r0") as r0, http_upstream("r1") as r1, http_upstream("r2") as r2:
        yield [r0, r1, r2]


def pool(name: str, replicas: list[RunningHttpUpstream], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "streamable-http",
        "endpoints": [{"url": r.url, "id": r.name} for r in replicas],
        **extra,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    replicas: list[RunningHttpUpstream], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    weighted = {
        "name": "wt",
        "transport": "streamable-http",
        "balance": {"strategy": "weighted"},
        "endpoints": [{"url": r.url, "id": r.name, "weight": w} for r, w in zip(replicas, (1, 3, 6), strict=True)],
    }
    canary = {
        "name": "canary",
        "transport": "streamable-http",
        "balance": {"strategy": "round_robin"},
        "endpoints": [
            {"url": replicas[0].url, "id": "a", "version": "v1"},
            {"url": replicas[1].url, "id": "b", "version": "v1"},
            {"url": replicas[2].url, "id": "c", "version": "v2"},
        ],
    }
    servers = [
        pool("rr", replicas, balance={"strategy": "round_robin"}),
        weighted,
        pool("lif", replicas),  # least_inflight, the default
        pool("p2c", replicas, balance={"strategy": "random_two_choices"}),
        pool("ch", replicas, balance={"strategy": "consistent_hash", "hash_key": "argument:user"}),
        pool("hdr", replicas, balance={"strategy": "consistent_hash", "hash_key": "header:X-Tenant"}),
        canary,
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store")) as gw:
        yield gw


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def served_by(
    http: aiohttp.ClientSession, gw: RunningGateway, tool: str, count: int, arguments: dict[str, Any] | None = None
) -> Counter[str]:
    """Make `count` calls (eight at a time) and count the replicas that answered."""
    seen: Counter[str] = Counter()
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            seen[text_of(await call_tool(http, gw.url, tool, arguments or {}, msg_id=i))] += 1

    await asyncio.gather(*(worker() for _ in range(8)))
    return seen


def within(observed: int, total: int, share: float) -> bool:
    """Is `observed` of `total` within five binomial standard deviations of `share`?"""
    sd = math.sqrt(total * share * (1 - share))
    return abs(observed - total * share) <= 5 * sd


async def test_round_robin_takes_turns(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    seen = Counter([text_of(await call_tool(http, gateway.url, "rr__replica", {}, msg_id=i)) for i in range(30)])
    assert seen == {"r0": 10, "r1": 10, "r2": 10}


async def test_weighted_follows_the_weights(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    gateway.gateway.router.dispatcher.rng.seed(6)
    seen = await served_by(http, gateway, "wt__replica", 1000)
    assert sum(seen.values()) == 1000
    for name, share in zip(NAMES, (0.1, 0.3, 0.6), strict=True):
        assert within(seen[name], 1000, share), seen


async def test_random_two_choices_spreads_evenly(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    gateway.gateway.router.dispatcher.rng.seed(2)
    seen = await served_by(http, gateway, "p2c__replica", 600)
    assert set(seen) == set(NAMES)
    assert all(within(seen[name], 600, 1 / 3) for name in NAMES), seen


async def test_least_inflight_fills_the_idlest_replica(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    lif = gateway.gateway.manager.get("lif")
    assert lif is not None
    calls = [
        asyncio.create_task(call_tool(http, gateway.url, "lif__replica", {"delay": 3}, msg_id=i)) for i in range(6)
    ]
    async with asyncio.timeout(10):  # all six in flight at once: two on each replica, never three on one
        while lif.inflight < 6:  # noqa: ASYNC110 - bounded poll of a counter
            await asyncio.sleep(0.01)
    assert [r.inflight for r in lif.replicas] == [2, 2, 2]
    answers = await asyncio.gather(*calls)
    assert Counter(text_of(a) for a in answers) == {"r0": 2, "r1": 2, "r2": 2}


async def test_consistent_hash_keeps_each_key_on_its_replica(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    users = [f"user-{n}" for n in range(30)]

    async def owners() -> dict[str, str]:
        found: dict[str, str] = {}
        for n, user in enumerate(users):
            answers = {text_of(await call_tool(http, gateway.url, "ch__replica", {"user": user}, msg_id=n))}
            answers.add(text_of(await call_tool(http, gateway.url, "ch__replica", {"user": user}, msg_id=n)))
            assert len(answers) == 1, f"{user} moved between calls: {answers}"
            found[user] = answers.pop()
        return found

    before = await owners()
    assert len(set(before.values())) == 3  # thirty keys land on every replica
    # Draining one replica moves only its own keys.
    ch = gateway.gateway.manager.get("ch")
    assert ch is not None
    drained = ch.replica("r1")
    assert drained is not None
    drained.draining = True
    try:
        after = await owners()
    finally:
        drained.draining = False
    for user in users:
        if before[user] == "r1":
            assert after[user] != "r1"
        else:
            assert after[user] == before[user]
    assert await owners() == before  # back in rotation, it gets its keys back


async def test_consistent_hash_on_a_header(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    owners: Counter[str] = Counter()
    for n in range(20):
        tenant = {"X-Tenant": f"tenant-{n}"}
        first = text_of(await call_tool(http, gateway.url, "hdr__replica", {}, msg_id=n, headers=tenant))
        again = text_of(await call_tool(http, gateway.url, "hdr__replica", {}, msg_id=n, headers=tenant))
        assert first == again
        owners[first] += 1
    assert len(owners) >= 2


async def toolway_cli(*args: str) -> tuple[int, str, str]:
    """The real `toolway` command in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLWAY_")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "toolway"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_canary_split_90_10_within_three_points(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    assert gateway.admin_url is not None
    gateway.gateway.router.dispatcher.rng.seed(10)
    code, out, err = await toolway_cli("servers", "weight", "canary", "v2=10", "--admin-url", gateway.admin_url)
    assert code == 0, err
    assert "v1 90%" in out and "v2 10%" in out
    try:
        seen = await served_by(http, gateway, "canary__replica", 2000)
        v2_share = seen["r2"] / 2000  # replica c (process r2) is the only v2
        assert abs(v2_share - 0.10) <= 0.03, seen
        assert seen["r0"] and seen["r1"]  # v1's share is spread over both of its replicas
        # Blue/green: everything to v2 at once, without a restart.
        code, _, err = await toolway_cli(
            "servers", "weight", "canary", "v1=0", "v2=100", "--admin-url", gateway.admin_url
        )
        assert code == 0, err
        assert await served_by(http, gateway, "canary__replica", 40) == {"r2": 40}
    finally:
        code, _, err = await toolway_cli("servers", "weight", "canary", "--admin-url", gateway.admin_url)
        assert code == 0, err
    assert set(await served_by(http, gateway, "canary__replica", 30)) == set(NAMES)


async def test_bad_weights_are_refused_with_the_reason(gateway: RunningGateway) -> None:
    assert gateway.admin_url is not None
    code, _, err = await toolway_cli("servers", "weight", "canary", "v3=10", "--admin-url", gateway.admin_url)
    assert code == 2 and "no version 'v3'" in err
    code, _, err = await toolway_cli("servers", "weight", "canary", "v1=60", "v2=50", "--admin-url", gateway.admin_url)
    assert code == 2 and "over 100" in err
    code, _, err = await toolway_cli("servers", "weight", "canary", "v2=ten", "--admin-url", gateway.admin_url)
    assert code == 2 and "VERSION=PERCENT" in err


async def test_stdio_replicas_are_one_server_of_several_processes(tmp_path: Path) -> None:
    server = {
        "name": "loc",
        "transport": "stdio",
        "command": stdio_upstream_command("loc"),
        "replicas": 3,
        "balance": {"strategy": "round_robin"},
    }
    async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
        pool = gw.gateway.manager.get("loc")
        assert pool is not None
        pids = {str(r.conn.pid()) for r in pool.replicas}
        assert len(pids) == 3
        seen = Counter([text_of(await call_tool(http, gw.url, "loc__pid", {}, msg_id=n)) for n in range(30)])
        assert seen == dict.fromkeys(pids, 10)
        # The catalog is the server's, once: one `loc__pid`, not three.
        answer = await list_tools(http, gw.url)
        assert [t["name"] for t in answer].count("loc__pid") == 1


async def list_tools(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    body, headers = modern_request("tools/list", {})
    async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
        tools: list[dict[str, Any]] = (await resp.json())["result"]["tools"]
        return tools


async def test_drain_from_the_cli_takes_a_replica_out_and_back(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.admin_url is not None
    admin = ("--admin-url", gateway.admin_url)
    code, out, err = await toolway_cli("servers", "drain", "rr", "r1", *admin)
    assert code == 0, err
    assert out.strip() == "rr replica r1 is drained"  # nothing was in flight on it
    try:
        seen = Counter([text_of(await call_tool(http, gateway.url, "rr__replica", {}, msg_id=i)) for i in range(10)])
        assert seen == {"r0": 5, "r2": 5}
        code, out, _ = await toolway_cli("traffic", *admin)
        assert code == 0 and any(line.split()[:2] == ["r1", "draining"] for line in out.splitlines())
    finally:
        code, out, err = await toolway_cli("servers", "drain", "rr", "r1", "--undo", *admin)
        assert code == 0, err
    seen = Counter([text_of(await call_tool(http, gateway.url, "rr__replica", {}, msg_id=i)) for i in range(9)])
    assert seen == {"r0": 3, "r1": 3, "r2": 3}
    code, _, err = await toolway_cli("servers", "drain", "rr", "r9", *admin)
    assert code == 2 and "no replica 'r9'" in err
