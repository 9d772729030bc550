"""Resilience over real replicas: a replica killed mid-load, retries that never run a call twice,
ejection and the circuit breaker (on an injected clock), and the kill switch from the CLI.

Each replica is a fixture upstream process that appends the key of every `record` call
(not idempotent) to a journal file, which survives the process being killed; so a key
found twice across the journals is a call that ran twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from toolway.observability.events import BreakerChanged, ReplicaEjected, RetryScheduled
from toolway.testing import RunningGateway, RunningHttpUpstream, http_upstream, running_gateway
from toolway.testing.wire import call_tool, text_of

FAST = {"reconnect": {"initial": 0.1, "max": 0.5}}


class ShiftableClock:
    """Monotonic time the test can move forward; sleeps are real (the gateway's supervisors use them)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@asynccontextmanager
async def replicas(tmp_path: Path, count: int = 3, **kwargs: Any) -> AsyncIterator[list[RunningHttpUpstream]]:
    async with AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(http_upstream(f"r{n}", journal=str(tmp_path / f"r{n}.journal"), **kwargs))
            for n in range(count)
        ]
        yield started


def calc(upstreams: list[RunningHttpUpstream], **extra: Any) -> dict[str, Any]:
    endpoints = [{"url": r.url, "id": r.name} for r in upstreams]
    return {"name": "calc", "transport": "streamable-http", "endpoints": endpoints, **FAST, **extra}


def journals(tmp_path: Path) -> Counter[str]:
    """How many times each key was recorded, over every replica's journal."""
    seen: Counter[str] = Counter()
    for path in tmp_path.glob("*.journal"):
        seen.update(line for line in path.read_text().splitlines() if line)
    return seen


def journal_of(tmp_path: Path, key: str) -> str | None:
    """The replica whose journal holds `key`."""
    for path in tmp_path.glob("*.journal"):
        if key in path.read_text().splitlines():
            return path.stem
    return None


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - bounded poll of state the test does not own
            await asyncio.sleep(0.01)


async def test_a_replica_killed_mid_load_fails_no_safe_call_and_runs_nothing_twice(tmp_path: Path) -> None:
    async with (
        replicas(tmp_path) as upstreams,
        running_gateway(servers=[calc(upstreams)], store_dir=tmp_path) as gw,
        aiohttp.ClientSession() as http,
    ):
        total, done, halfway = 300, [0], asyncio.Event()
        answers: dict[int, dict[str, Any]] = {}
        queue = iter(range(total))

        async def worker() -> None:
            for i in queue:
                if i % 2:  # not idempotent: runs at most once, whatever happens
                    answer = await call_tool(http, gw.url, "calc__record", {"key": f"k{i}", "delay": 0.02}, i)
                else:  # read-only: the gateway may retry it elsewhere
                    answer = await call_tool(http, gw.url, "calc__replica", {"delay": 0.02}, i)
                answers[i] = answer
                done[0] += 1
                if done[0] == total // 3:
                    halfway.set()

        async def killer() -> None:
            await halfway.wait()
            await upstreams[1].kill()  # SIGKILL, with calls in flight on it

        await asyncio.gather(killer(), *(worker() for _ in range(12)))

        assert len(answers) == total
        for i in range(0, total, 2):
            assert "result" in answers[i], f"read-only call {i} failed: {answers[i]}"
        recorded = journals(tmp_path)
        assert all(count == 1 for count in recorded.values()), [k for k, c in recorded.items() if c > 1]
        for i in range(1, total, 2):
            if "result" in answers[i]:
                assert recorded[f"k{i}"] == 1
            else:
                # Only a call that may have reached the dead replica fails, and it says it is not retryable.
                data = answers[i]["error"]["data"]
                assert data["cause"] in ("reset", "timeout") and data["retryable"] is False, answers[i]
        served = Counter(text_of(answers[i]) for i in range(0, total, 2))
        assert served["r1"] > 0 and served["r0"] > 0 and served["r2"] > 0  # the dead one had its share first
        state = await admin_json(http, gw, "/admin/traffic")
        health = {r["id"]: r["health"] for r in state["servers"]["calc"]["replicas"]}
        assert health["r1"] in ("down", "connecting") and health["r0"] == health["r2"] == "healthy"


async def test_a_call_that_never_reached_a_dead_replica_is_retried_elsewhere_once(tmp_path: Path) -> None:
    server = calc([], balance={"strategy": "round_robin"})
    async with replicas(tmp_path) as upstreams:
        server["endpoints"] = [{"url": r.url, "id": r.name} for r in upstreams]
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            retries: list[RetryScheduled] = []
            gw.gateway.events.subscribe(RetryScheduled, retries.append)
            await upstreams[1].kill()  # the gateway has not noticed: r1 still looks connected
            answers = [await call_tool(http, gw.url, "calc__record", {"key": f"once-{n}"}, n) for n in range(3)]
            assert all("result" in a for a in answers), answers
            assert [(r.replica, r.cause) for r in retries] == [("r1", "refused")]
            recorded = journals(tmp_path)
            assert [recorded[f"once-{n}"] for n in range(3)] == [1, 1, 1]
            assert "r1" not in {text_of(a) for a in answers}


async def test_a_call_in_flight_on_a_killed_replica_is_retried_only_if_idempotent(tmp_path: Path) -> None:
    async with (
        replicas(tmp_path) as upstreams,
        running_gateway(servers=[calc(upstreams)], store_dir=tmp_path) as gw,
        aiohttp.ClientSession() as http,
    ):
        by_name = {u.name: u for u in upstreams}
        pool = gw.gateway.manager.get("calc")
        assert pool is not None
        # Not idempotent: it ran (the journal says so), its replica died before answering.
        pending = asyncio.create_task(call_tool(http, gw.url, "calc__record", {"key": "lost", "delay": 30}, 1))
        await wait_until(lambda: journal_of(tmp_path, "lost") is not None)
        victim = journal_of(tmp_path, "lost")
        assert victim is not None
        await by_name[victim].kill()
        answer = await pending
        assert answer["error"]["code"] == -32000
        assert answer["error"]["data"] == {"server": "calc", "cause": "reset", "retryable": False}
        assert journals(tmp_path)["lost"] == 1  # never sent again
        # Read-only: the same loss is retried on another replica, and the client sees a result.
        pending = asyncio.create_task(call_tool(http, gw.url, "calc__replica", {"delay": 3}, 2))
        await wait_until(lambda: any(r.inflight for r in pool.replicas))
        busy = next(r for r in pool.replicas if r.inflight)
        await by_name[busy.id].kill()
        answer = await pending
        assert text_of(answer) not in (victim, busy.id)


async def stop_and_wait_for(
    gw: RunningGateway, http: aiohttp.ClientSession, upstream: RunningHttpUpstream, done: Any
) -> Counter[str]:
    """SIGSTOP `upstream` (it accepts, never answers) and call until `done()`; count who answered."""
    os.kill(upstream.process.pid, signal.SIGSTOP)
    answered: Counter[str] = Counter()
    for n in range(30):
        if done():
            return answered
        answer = await call_tool(http, gw.url, "calc__replica", {}, n)
        if "result" in answer:
            answered[text_of(answer)] += 1
        else:
            assert answer["error"]["data"]["cause"] == "timeout", answer
    raise AssertionError("the stopped replica was never taken out of rotation")


async def test_outlier_detection_ejects_a_failing_replica_until_its_time_is_up(tmp_path: Path) -> None:
    clock = ShiftableClock()
    server = calc(
        [],
        balance={"strategy": "round_robin"},
        timeouts={"call": 0.5},
        breaker={"enabled": False},
        outlier_detection={"consecutive_failures": 2, "base_ejection_seconds": 60},
    )
    async with replicas(tmp_path) as upstreams:
        server["endpoints"] = [{"url": r.url, "id": r.name} for r in upstreams]
        async with (
            running_gateway(servers=[server], store_dir=tmp_path, clock=clock) as gw,
            aiohttp.ClientSession() as http,
        ):
            ejections: list[ReplicaEjected] = []
            gw.gateway.events.subscribe(ReplicaEjected, ejections.append)
            await stop_and_wait_for(gw, http, upstreams[1], lambda: bool(ejections))
            assert [(e.replica, e.seconds) for e in ejections] == [("r1", 60)]
            answers = [await call_tool(http, gw.url, "calc__replica", {}, n) for n in range(12)]
            assert Counter(text_of(a) for a in answers) == {"r0": 6, "r2": 6}  # no call is sent to r1
            state = await admin_json(http, gw, "/admin/traffic")
            health = {r["id"]: r["health"] for r in state["servers"]["calc"]["replicas"]}
            assert health == {"r0": "healthy", "r1": "ejected", "r2": "healthy"}

            os.kill(upstreams[1].process.pid, signal.SIGCONT)
            clock.offset += 61  # the ejection is over
            answers = [await call_tool(http, gw.url, "calc__replica", {}, n) for n in range(12)]
            assert Counter(text_of(a) for a in answers) == {"r0": 4, "r1": 4, "r2": 4}


async def test_breaker_opens_then_half_opens_then_closes_on_the_injected_clock(tmp_path: Path) -> None:
    clock = ShiftableClock()
    server = calc(
        [],
        balance={"strategy": "round_robin"},
        timeouts={"call": 0.5},
        outlier_detection={"enabled": False},
        breaker={"failure_threshold": 2, "open_seconds": 30},
    )
    async with replicas(tmp_path) as upstreams:
        server["endpoints"] = [{"url": r.url, "id": r.name} for r in upstreams]
        async with (
            running_gateway(servers=[server], store_dir=tmp_path, clock=clock) as gw,
            aiohttp.ClientSession() as http,
        ):
            moves: list[tuple[str, str, str]] = []
            gw.gateway.events.subscribe(BreakerChanged, lambda e: moves.append((e.replica, e.old, e.new)))
            await stop_and_wait_for(gw, http, upstreams[2], lambda: bool(moves))
            assert moves == [("r2", "closed", "open")]
            answers = [await call_tool(http, gw.url, "calc__replica", {}, n) for n in range(6)]
            assert {text_of(a) for a in answers} == {"r0", "r1"}

            os.kill(upstreams[2].process.pid, signal.SIGCONT)
            clock.offset += 31  # open -> half-open: the next call that picks r2 is its trial
            answers = [await call_tool(http, gw.url, "calc__replica", {}, n) for n in range(9)]
            assert Counter(text_of(a) for a in answers) == {"r0": 3, "r1": 3, "r2": 3}
            assert moves == [("r2", "closed", "open"), ("r2", "open", "half_open"), ("r2", "half_open", "closed")]
            assert gw.admin_url is not None
            async with http.get(gw.admin_url + "/metrics") as resp:
                scrape = await resp.text()
            for state in ("open", "half_open", "closed"):
                assert f'toolway_breaker_transitions_total{{replica="r2",server="calc",state="{state}"}} 1.0' in scrape
            assert 'toolway_replica_health{health="healthy",replica="r2",server="calc"} 1.0' in scrape


async def admin_json(http: aiohttp.ClientSession, gw: RunningGateway, path: str) -> dict[str, Any]:
    assert gw.admin_url is not None
    async with http.get(gw.admin_url + path) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


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


async def test_kill_switch_from_the_cli_takes_effect_on_the_next_call_and_undoes(tmp_path: Path) -> None:
    async with (
        replicas(tmp_path, count=1) as upstreams,
        running_gateway(servers=[calc(upstreams)], store_dir=tmp_path) as gw,
        aiohttp.ClientSession() as http,
    ):
        assert gw.admin_url is not None
        admin = ("--admin-url", gw.admin_url)
        assert text_of(await call_tool(http, gw.url, "calc__record", {"key": "before"})) == "r0"

        code, out, err = await toolway_cli("kill", "tool", "calc__record", *admin)
        assert code == 0, err
        assert out.strip() == "tool calc__record is off"
        answer = await call_tool(http, gw.url, "calc__record", {"key": "while-killed"})
        error = answer["error"]
        assert error["code"] == -32010
        assert "'calc'" in error["message"] and "'record'" in error["message"] and "toolway kill" in error["message"]
        assert error["data"] == {"server": "calc", "tool": "record", "cause": "killed", "retryable": False}
        assert text_of(await call_tool(http, gw.url, "calc__replica", {})) == "r0"  # only that tool is off

        code, out, err = await toolway_cli("kill", "tool", "calc__record", "--undo", *admin)
        assert code == 0, err
        assert text_of(await call_tool(http, gw.url, "calc__record", {"key": "after"})) == "r0"
        assert journals(tmp_path) == {"before": 1, "after": 1}  # the killed call never reached the server

        code, _, err = await toolway_cli("kill", "server", "calc", *admin)
        assert code == 0, err
        code, out, _ = await toolway_cli("traffic", "--json", *admin)
        assert json.loads(out)["killed"] == {"servers": ["calc"], "tools": []}
        assert (await call_tool(http, gw.url, "calc__replica", {}))["error"]["data"]["cause"] == "killed"
        code, _, err = await toolway_cli("revive", "server", "calc", *admin)
        assert code == 0, err
        assert text_of(await call_tool(http, gw.url, "calc__replica", {})) == "r0"

        code, _, err = await toolway_cli("kill", "server", "nope", *admin)
        assert code == 2 and "no server named 'nope'" in err
        code, _, err = await toolway_cli("kill", "tool", "calc", *admin)
        assert code == 2 and "<server>__<tool>" in err
