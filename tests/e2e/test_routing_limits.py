"""Per-call deadlines in phases (first byte, total), renewal by progress notifications, and the
bound on calls in flight per replica."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from toolway.testing import http_upstream, running_gateway
from toolway.testing.wire import call_tool, events, modern_request, text_of


async def call_with_progress(
    http: aiohttp.ClientSession, url: str, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """A tools/call with a progress token; the final JSON-RPC response."""
    body, headers = modern_request(
        "tools/call", {"name": name, "arguments": arguments, "_meta": {"progressToken": "p"}}
    )
    async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
        if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            answer: dict[str, Any] = orjson.loads(await resp.read())
            return answer
        async for event in events(resp):
            msg = orjson.loads(event.data) if event.data else None
            if isinstance(msg, dict) and "id" in msg and "method" not in msg:
                return msg
    raise AssertionError("no response")


async def test_progress_renews_the_deadline_up_to_its_maximum(tmp_path: Path) -> None:
    async with http_upstream("p") as upstream:
        servers = [
            {
                "name": "renewed",
                "transport": "streamable-http",
                "url": upstream.url,
                "timeouts": {"call": 0.6, "progress_max": 10},
            },
            {
                "name": "capped",
                "transport": "streamable-http",
                "url": upstream.url,
                "timeouts": {"call": 0.6, "progress_max": 0.9},
            },
            {"name": "plain", "transport": "streamable-http", "url": upstream.url, "timeouts": {"call": 0.6}},
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            # Eight steps 0.25 s apart: 2 s in all, never 0.6 s without news.
            steps = {"steps": 8, "delay": 0.25}
            answer = await call_with_progress(http, gw.url, "renewed__progress", steps)
            assert answer["result"]["content"][0]["text"] == "p counted 8"
            answer = await call_with_progress(http, gw.url, "capped__progress", steps)
            assert answer["error"]["code"] == -32001 and "renewed by progress" in answer["error"]["message"]
            answer = await call_with_progress(http, gw.url, "plain__progress", steps)
            assert answer["error"]["code"] == -32001
            assert answer["error"]["data"] == {"server": "plain", "cause": "timeout", "retryable": False}


async def test_first_byte_fails_a_silent_call_early(tmp_path: Path) -> None:
    async with http_upstream("f") as upstream:
        server = {
            "name": "f",
            "transport": "streamable-http",
            "url": upstream.url,
            "timeouts": {"call": 30, "first_byte": 0.3},
        }
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            answer = await call_with_progress(http, gw.url, "f__slow", {"seconds": 20})
            assert answer["error"]["code"] == -32001
            assert "timeouts.first_byte" in answer["error"]["message"]
            # A call that reports progress early has said something: the total deadline applies.
            answer = await call_with_progress(http, gw.url, "f__progress", {"steps": 3, "delay": 0.2})
            assert answer["result"]["content"][0]["text"] == "f counted 3"
            assert "result" in await call_tool(http, gw.url, "f__echo", {"text": "quick"})


async def test_a_full_replica_takes_no_new_call(tmp_path: Path) -> None:
    async with http_upstream("a") as a, http_upstream("b") as b:
        server = {
            "name": "lim",
            "transport": "streamable-http",
            "endpoints": [{"url": a.url, "id": "a"}, {"url": b.url, "id": "b"}],
            "pool": {"max_inflight": 1},
        }
        async with running_gateway(servers=[server], store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            pool = gw.gateway.manager.get("lim")
            assert pool is not None
            slow = [asyncio.create_task(call_tool(http, gw.url, "lim__replica", {"delay": 3}, n)) for n in range(2)]
            async with asyncio.timeout(10):
                while pool.inflight < 2:  # noqa: ASYNC110 - bounded poll of a counter
                    await asyncio.sleep(0.01)
            assert [r.inflight for r in pool.replicas] == [1, 1]  # one each, never two on one
            answer = await call_tool(http, gw.url, "lim__replica", {}, 9)
            assert answer["error"]["data"]["cause"] == "no_healthy_replica"
            assert "a: full" in answer["error"]["message"] and "b: full" in answer["error"]["message"]
            assert sorted(text_of(r) for r in await asyncio.gather(*slow)) == ["a", "b"]
            assert text_of(await call_tool(http, gw.url, "lim__replica", {}, 10)) in ("a", "b")
