"""Each replica's pool of upstream sessions, against real fixture upstreams that keep a ledger of
the sessions they see (`toolway.testing.session_ledger`): limits under load, waiting in FIFO
order within the deadline, idle sessions closed on an injected clock, warm sessions at start
and on registration, and slots given back after a failed dial or a cancelled call.

The `session` tool holds a call until the test releases its key, so "how many at once" is decided
by the test, not by timing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from toolway.observability.events import PoolSaturated, PoolWaited, UpstreamSessionClosed, UpstreamSessionOpened
from toolway.sessions.pool import Replica
from toolway.testing import RunningGateway, RunningHttpUpstream, http_upstream, running_gateway
from toolway.testing.admin import AdminClient, until
from toolway.testing.clock import ManualClock
from toolway.testing.wire import call_tool, modern_request, text_of


def pooled(name: str, upstream: RunningHttpUpstream, **pool: Any) -> dict[str, Any]:
    return {"name": name, "transport": "streamable-http", "url": upstream.url, "sharing": "shared", "pool": pool}


def replica(gw: RunningGateway, server: str) -> Replica:
    pool = gw.gateway.manager.get(server)
    assert pool is not None
    return pool.replicas[0]


async def ledger(http: aiohttp.ClientSession, upstream: RunningHttpUpstream) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{upstream.port}/debug/sessions") as resp:
        report: dict[str, Any] = await resp.json()
        return report


async def debug(http: aiohttp.ClientSession, upstream: RunningHttpUpstream, route: str) -> None:
    async with http.post(f"http://127.0.0.1:{upstream.port}/debug/{route}") as resp:
        assert resp.status == 200, await resp.text()


async def upstream_holding(http: aiohttp.ClientSession, upstream: RunningHttpUpstream, calls: int) -> dict[str, Any]:
    """Wait (bounded) until the upstream holds `calls` calls; its ledger then."""
    async with asyncio.timeout(10):
        while True:
            report = await ledger(http, upstream)
            if sum(report["inflight"].values()) == calls:
                return report
            await asyncio.sleep(0.01)


def session_of(answer: dict[str, Any]) -> str:
    return text_of(answer).split()[1]


async def test_sessions_and_calls_per_session_stay_within_the_limits_under_load(tmp_path: Path) -> None:
    async with http_upstream("lim", era="handshake") as up:
        server = pooled("lim", up, max_connections=3, max_inflight=2, max_waiting=50)
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            saturated: list[PoolSaturated] = []
            gw.gateway.events.subscribe(PoolSaturated, saturated.append)
            r = replica(gw, "lim")
            calls = [asyncio.create_task(call_tool(http, gw.url, "lim__session", {"key": "go"}, n)) for n in range(10)]
            await until(lambda: r.inflight == 6 and r.sessions.waiting == 4, what="6 calls in flight, 4 waiting")
            report = await upstream_holding(http, up, 6)
            assert len(report["open"]) == 3  # the gateway's own session and two more, never a fourth
            assert max(report["peak"].values()) == 2  # pool.max_inflight per session
            async with AdminClient(gw.admin_url) as admin:
                _, metrics = await admin.request("GET", "/metrics")
            assert 'toolway_upstream_sessions{server="lim"} 3.0' in metrics
            assert 'toolway_pool_waiting{server="lim"} 4.0' in metrics
            assert [(e.waits, e.principal) for e in saturated] == [(True, None)] * 4

            await debug(http, up, "release?key=go")
            answers = await asyncio.gather(*calls)
            report = await ledger(http, up)
            assert {session_of(a) for a in answers} == set(report["open"])
            assert report["seen"] == 3 and max(report["peak"].values()) == 2
            assert r.inflight == 0 and r.sessions.waiting == 0


async def test_a_full_replica_queues_calls_in_order_within_their_deadline(tmp_path: Path) -> None:
    async with http_upstream("fifo", era="handshake") as up, http_upstream("brief", era="handshake") as up2:
        servers = [
            pooled("fifo", up, max_connections=1, max_inflight=1, max_waiting=10),
            pooled("brief", up2, max_connections=1, max_inflight=1, max_waiting=10, max_wait_seconds=0.3),
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            waited: list[PoolWaited] = []
            gw.gateway.events.subscribe(PoolWaited, waited.append)
            r = replica(gw, "fifo")
            held = asyncio.create_task(call_tool(http, gw.url, "fifo__session", {"key": "h"}, 1))
            await until(lambda: r.inflight == 1, what="the held call")
            queued = []
            for n, key in enumerate(("b", "c", "d"), start=1):
                queued.append(asyncio.create_task(call_tool(http, gw.url, "fifo__record", {"key": key}, 10 + n)))
                await until(lambda n=n: r.sessions.waiting == n, what=f"{n} waiting")  # type: ignore[misc]

            # A waiting client that goes away leaves the queue (closing its stream cancels the call).
            body, headers = modern_request("tools/call", {"name": "fifo__record", "arguments": {"key": "gone"}}, 20)

            async def abandoned() -> None:
                async with http.post(gw.url, data=orjson.dumps(body), headers=headers) as resp:
                    await resp.read()

            leaving = asyncio.create_task(abandoned())
            await until(lambda: r.sessions.waiting == 4, what="the fourth waiter")
            leaving.cancel()
            await until(lambda: r.sessions.waiting == 3, what="the abandoned waiter gone")

            await debug(http, up, "release?key=h")
            assert session_of(await held) and [text_of(a) for a in await asyncio.gather(*queued)] == ["fifo"] * 3
            journal = await call_tool(http, gw.url, "fifo__journal", {}, 30)
            assert text_of(journal).split() == ["b", "c", "d"]  # first come, first served; "gone" never ran
            assert sorted(e.outcome for e in waited) == ["cancelled", "granted", "granted", "granted"]
            assert (await ledger(http, up))["seen"] == 1 and r.inflight == 0

            # A wait is bounded (by the call's deadline, and here `max_wait_seconds`): then the
            # retryable "full" error, while the slot's holder goes on.
            b = replica(gw, "brief")
            held = asyncio.create_task(call_tool(http, gw.url, "brief__session", {"key": "h2"}, 40))
            await until(lambda: b.inflight == 1, what="the held call")
            answer = await call_tool(http, gw.url, "brief__echo", {"text": "x"}, 41)
            assert answer["error"]["data"] == {"server": "brief", "cause": "no_healthy_replica", "retryable": True}
            assert "replica 0 is full" in answer["error"]["message"] and "no slot within" in answer["error"]["message"]
            await debug(http, up2, "release?key=h2")
            assert session_of(await held)
            assert b.inflight == 0 and b.sessions.waiting == 0


async def test_when_every_replica_is_full_a_call_waits_on_one_and_gets_the_freed_slot(tmp_path: Path) -> None:
    async with http_upstream("ra", era="handshake") as a, http_upstream("rb", era="handshake") as b:
        server = {
            "name": "two",
            "transport": "streamable-http",
            "sharing": "shared",
            "endpoints": [{"url": a.url, "id": "a"}, {"url": b.url, "id": "b"}],
            "pool": {"max_connections": 1, "max_inflight": 1, "max_waiting": 5},
        }
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            pool = gw.gateway.manager.get("two")
            assert pool is not None
            held = [asyncio.create_task(call_tool(http, gw.url, "two__session", {"key": "k"}, n)) for n in range(2)]
            await until(lambda: [r.inflight for r in pool.replicas] == [1, 1], what="one call on each replica")
            waiting = asyncio.create_task(call_tool(http, gw.url, "two__replica", {}, 9))
            await until(lambda: sum(r.sessions.waiting for r in pool.replicas) == 1, what="the third call waiting")
            queued_on = next(r for r in pool.replicas if r.sessions.waiting)
            await debug(http, a if queued_on.id == "a" else b, "release?key=k")
            assert text_of(await waiting) == ("ra" if queued_on.id == "a" else "rb")
            await debug(http, b if queued_on.id == "a" else a, "release?key=k")
            assert all(session_of(answer) for answer in await asyncio.gather(*held))


async def test_idle_sessions_beyond_warm_close_after_idle_seconds(tmp_path: Path) -> None:
    clock = ManualClock()
    async with http_upstream("idle", era="handshake") as up:
        server = pooled("idle", up, max_connections=3, max_inflight=1, idle_seconds=60)
        async with (
            running_gateway(servers=[server], store_dir=tmp_path, clock=clock) as gw,
            aiohttp.ClientSession() as http,
        ):
            closed: list[UpstreamSessionClosed] = []
            gw.gateway.events.subscribe(UpstreamSessionClosed, closed.append)
            r = replica(gw, "idle")
            calls = [asyncio.create_task(call_tool(http, gw.url, "idle__session", {"key": "k"}, n)) for n in range(3)]
            await upstream_holding(http, up, 3)
            await debug(http, up, "release?key=k")
            await asyncio.gather(*calls)
            assert len((await ledger(http, up))["open"]) == 3 and r.sessions.open_count() == 3

            clock.advance(60.0)
            await until(lambda: len(closed) == 2, what="two idle sessions closed")
            assert {e.reason for e in closed} == {"idle"}
            await until(lambda: r.sessions.open_count() == 1, what="one session left")
            assert r.sessions.sessions[0].gateway  # `warm: 1` is the gateway's own, never closed
            async with asyncio.timeout(10):
                # A bounded poll of another process's state: the upstream saw the DELETEs.
                while len((await ledger(http, up))["open"]) != 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert text_of(await call_tool(http, gw.url, "idle__echo", {"text": "still"}, 9)) == "still"


async def test_warm_sessions_connect_at_start_and_on_registration(tmp_path: Path) -> None:
    async with http_upstream("warm", era="handshake") as up, http_upstream("late", era="handshake") as late:
        opened: list[UpstreamSessionOpened] = []
        async with (
            running_gateway(servers=[pooled("warm", up, warm=3)], store_dir=tmp_path) as gw,
            aiohttp.ClientSession() as http,
            AdminClient(gw.admin_url) as admin,
        ):
            gw.gateway.events.subscribe(UpstreamSessionOpened, opened.append)

            async def connected(server: str) -> int:
                _, traffic = await admin.request("GET", "/admin/traffic")
                sessions = traffic["servers"].get(server, {"replicas": [{"sessions": {"connected": 0}}]})
                return int(sessions["replicas"][0]["sessions"]["connected"])

            async with asyncio.timeout(10):
                while await connected("warm") < 3:  # noqa: ASYNC110 - bounded poll of the admin API
                    await asyncio.sleep(0.01)
            assert len((await ledger(http, up))["open"]) == 3  # before any call

            status, _ = await admin.request("POST", "/admin/servers", pooled("late", late, warm=2))
            assert status == 201
            async with asyncio.timeout(10):
                while await connected("late") < 2:  # noqa: ASYNC110 - bounded poll of the admin API
                    await asyncio.sleep(0.01)
            assert len((await ledger(http, late))["open"]) == 2
            assert [e.reason for e in opened if e.server == "late"] == ["warm"]  # the gateway's own is not a pool event


async def test_pool_sessions_get_keepalive_pings_unless_turned_off(tmp_path: Path) -> None:
    async with http_upstream("pinged", era="handshake") as on, http_upstream("quiet", era="handshake") as off:
        servers = [
            {**pooled("pinged", on, warm=2), "keepalive_seconds": 0.2},
            {**pooled("quiet", off, warm=2, keepalive=False), "keepalive_seconds": 0.2},
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            for name in ("pinged", "quiet"):
                r = replica(gw, name)
                await until(lambda r=r: r.sessions.describe()["connected"] == 2, what=f"{name}'s warm sessions")

            async def posts(upstream: RunningHttpUpstream) -> dict[str, int]:
                report = await ledger(http, upstream)
                return {sid: report["posts"].get(sid, 0) for sid in report["open"]}

            async def grown(upstream: RunningHttpUpstream, since: dict[str, int], by: int, sessions: int) -> None:
                async with asyncio.timeout(10):  # bounded poll of the upstream's ledger
                    while sum(n >= since[sid] + by for sid, n in (await posts(upstream)).items()) < sessions:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)

            start = await posts(on)
            await grown(on, start, 2, sessions=2)  # both sessions pinged, the pool's as the gateway's
            start = await posts(off)
            await grown(off, start, 2, sessions=1)  # the gateway's own session was pinged twice...
            after = await posts(off)
            assert sorted(after[sid] - start[sid] for sid in start)[0] == 0  # ...and the pool's not once


async def test_a_failed_dial_and_a_cancelled_call_give_their_slots_back(tmp_path: Path) -> None:
    async with http_upstream("dial", era="handshake") as up:
        server = pooled("dial", up, max_connections=2, max_inflight=1)
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            closed: list[UpstreamSessionClosed] = []
            gw.gateway.events.subscribe(UpstreamSessionClosed, closed.append)
            r = replica(gw, "dial")
            held = asyncio.create_task(call_tool(http, gw.url, "dial__session", {"key": "h"}, 1))
            await until(lambda: r.inflight == 1, what="the held call")

            await debug(http, up, "refuse?on=1")  # the upstream takes no new session
            answer = await call_tool(http, gw.url, "dial__echo", {"text": "x"}, 2)
            assert answer["error"]["data"]["cause"] == "unavailable" and answer["error"]["data"]["retryable"]
            assert closed and {e.reason for e in closed} == {"dial_failed"}  # each attempt's dial, retries included
            await until(lambda: r.sessions.open_count() == 1, what="the failed sessions gone")
            assert r.inflight == 1  # only the held call

            await debug(http, up, "refuse?on=0")  # the failed dials left no slot taken: a new session fits
            assert text_of(await call_tool(http, gw.url, "dial__echo", {"text": "y"}, 3)) == "y"
            assert r.sessions.open_count() == 2

            # A call cancelled by its client (its stream closed) frees its slot too.
            body, headers = modern_request("tools/call", {"name": "dial__session", "arguments": {"key": "never"}}, 4)

            async def abandoned() -> None:
                async with http.post(gw.url, data=orjson.dumps(body), headers=headers) as resp:
                    await resp.read()

            leaving = asyncio.create_task(abandoned())
            await until(lambda: r.inflight == 2, what="the second held call")
            leaving.cancel()
            await until(lambda: r.inflight == 1, what="the cancelled call's slot back")
            await debug(http, up, "release?key=h")
            assert session_of(await held)
            assert text_of(await call_tool(http, gw.url, "dial__echo", {"text": "z"}, 5)) == "z"
            assert r.inflight == 0 and len((await ledger(http, up))["open"]) == 2
