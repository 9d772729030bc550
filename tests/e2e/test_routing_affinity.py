"""Session affinity over real replicas.

A handshake-era client session stays on the replica it first used (the upstream
session there may hold its state), through other replicas' failures. When its own
replica dies, the client gets HTTP 404 on its session id and starts a new session,
as the Streamable HTTP transport prescribes (MCP 2025-11-25, Session Management:
"the server MAY terminate the session at any time, after which it MUST respond to
requests containing that session ID with HTTP 404 Not Found"; "the client MUST
start a new session"). Stateless-era upstreams are not pinned unless configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from toolway.testing import RunningHttpUpstream, http_upstream, running_gateway
from toolway.testing.wire import events, initialize, session_headers, tool_call


@asynccontextmanager
async def upstreams(prefix: str, count: int, **kwargs: Any) -> AsyncIterator[list[RunningHttpUpstream]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(http_upstream(f"{prefix}{n}", **kwargs)) for n in range(count)]


def pool(name: str, replicas: list[RunningHttpUpstream], **extra: Any) -> dict[str, Any]:
    endpoints = [{"url": r.url, "id": r.name} for r in replicas]
    return {"name": name, "transport": "streamable-http", "endpoints": endpoints, **extra}


async def session_call(
    http: aiohttp.ClientSession, url: str, session: str, tool: str, msg_id: int
) -> tuple[int, dict[str, Any]]:
    """A tools/call inside a handshake-era session: (HTTP status, the JSON-RPC response)."""
    body = orjson.dumps(tool_call(tool, {}, msg_id))
    async with http.post(url, data=body, headers=session_headers(session)) as resp:
        if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            async for event in events(resp):
                msg = orjson.loads(event.data) if event.data else None
                if isinstance(msg, dict) and msg.get("id") == msg_id:
                    return resp.status, msg
            raise AssertionError("the stream ended without a response")
        return resp.status, orjson.loads(await resp.read())


async def served(http: aiohttp.ClientSession, url: str, session: str, tool: str, times: int) -> set[str]:
    names = set()
    for n in range(times):
        status, answer = await session_call(http, url, session, tool, n + 1)
        assert status == 200 and "result" in answer, (status, answer)
        names.add(answer["result"]["content"][0]["text"])
    return names


async def test_a_session_stays_on_its_replica_and_is_ended_cleanly_when_it_dies(tmp_path: Path) -> None:
    reconnect = {"reconnect": {"initial": 0.1, "max": 0.5}}
    async with (
        upstreams("h", 3, era="handshake") as stateful,
        upstreams("s", 3) as stateless,
    ):
        servers = [
            pool("hs", stateful, **reconnect),  # least_inflight: unpinned, calls would spread at random
            pool("st", stateless, balance={"strategy": "round_robin"}),
            pool("stp", stateless, balance={"strategy": "round_robin"}, affinity=True),
        ]
        async with running_gateway(servers=servers, store_dir=tmp_path) as gw, aiohttp.ClientSession() as http:
            session = await initialize(http, gw.url)
            home = await served(http, gw.url, session, "hs__replica", 10)
            assert len(home) == 1
            (pinned,) = home

            # Stateless-era replicas: no pin by default, a pin when configured.
            assert len(await served(http, gw.url, session, "st__replica", 3)) == 3
            assert len(await served(http, gw.url, session, "stp__replica", 6)) == 1

            # Another replica dies: the session does not notice.
            by_name = {u.name: u for u in stateful}
            other = next(name for name in by_name if name != pinned)
            await by_name[other].kill()
            assert await served(http, gw.url, session, "hs__replica", 5) == {pinned}

            # Its own replica dies: 404 on the session, with a message that says why.
            await by_name[pinned].kill()
            status, answer = await session_call(http, gw.url, session, "hs__replica", 99)
            assert status == 404
            assert "start a new session" in answer["error"]["message"]
            assert answer["error"]["data"]["cause"] == "affinity_lost"
            status, answer = await session_call(http, gw.url, session, "hs__replica", 100)
            assert status == 404  # the session is over, not just that call

            # A new session works, on the replica that is left.
            fresh = await initialize(http, gw.url)
            survivor = ({u.name for u in stateful} - {pinned, other}).pop()
            assert await served(http, gw.url, fresh, "hs__replica", 3) == {survivor}
