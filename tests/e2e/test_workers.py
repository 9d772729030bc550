"""`toolway serve --workers 2` as a real process, driven by the official SDK's clients.

Clients here open a new TCP connection for every HTTP request (no keep-alive), so the
kernel's SO_REUSEPORT balancing spreads their requests over both workers; the
``x-toolway-worker`` response header says which worker answered, and
``x-toolway-forwarded-by`` that a worker passed a request on to the one owning its state.
No timing assertions: only outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import mcp.types as types
import pytest
import pytest_asyncio
import yaml
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from toolway.testing import RunningHttpUpstream, http_upstream, stdio_upstream_command

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOOLWAY = Path(sys.executable).parent / "toolway"
READY = "Toolway is ready: point your MCP client at "
CALLS = 24  # per test: enough new connections that both workers get some


@dataclass
class Workers:
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Seen:
    """What the responses' headers said: who answered, and who forwarded."""

    answered: Counter[str]
    forwarded: int = 0

    def record(self, headers: Any) -> None:
        self.answered[headers.get("x-toolway-worker", "?")] += 1
        if headers.get("x-toolway-forwarded-by") is not None:
            self.forwarded += 1


def _config(tmp: Path, alpha: RunningHttpUpstream) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "store": f"sqlite:///{tmp / 'toolway.db'}",
        "servers": [
            {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
            {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")},
        ],
        "limits": {"page_size": 3},  # lists take several pages: cursors must verify on any worker
        "logging": {"level": "info", "format": "json"},
        "shutdown": {"drain_seconds": 2},
    }
    path = tmp / "toolway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _log_file(path: Path) -> Any:
    return open(path, "wb")  # the child gets its own copy of the descriptor


@contextlib.asynccontextmanager
async def serve_workers(tmp: Path, alpha: RunningHttpUpstream, workers: int = 2) -> AsyncIterator[Workers]:
    log = tmp / "gateway.log"
    with _log_file(log) as stderr:
        process = await asyncio.create_subprocess_exec(
            str(TOOLWAY),
            "serve",
            "--config",
            str(_config(tmp, alpha)),
            "--workers",
            str(workers),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={k: v for k, v in os.environ.items() if not k.startswith("TOOLWAY_")},
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, f"the gateway exited before it was ready:\n{log.read_text()}"
                if line.startswith(READY):
                    break
        yield Workers(line[len(READY) :].strip(), process, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alpha() -> AsyncIterator[RunningHttpUpstream]:
    async with http_upstream("alpha") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(alpha: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Workers]:
    async with serve_workers(tmp_path_factory.mktemp("workers"), alpha) as workers:
        yield workers


def fresh_connections(seen: Seen, **kwargs: Any) -> httpx2.AsyncClient:
    """An HTTP client that opens a new connection for every request and records the headers."""

    async def on_response(response: httpx2.Response) -> None:
        seen.record(response.headers)

    return httpx2.AsyncClient(
        limits=httpx2.Limits(max_keepalive_connections=0),
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
        **kwargs,
    )


async def answer(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"answer": f"re: {params.message}"})


async def all_tools(client: Client) -> set[str]:
    names: set[str] = set()
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        names |= {t.name for t in page.tools}
        if not (cursor := page.next_cursor):
            return names


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def test_stateless_era_calls_succeed_on_both_workers(gw: Workers) -> None:
    seen = Seen(Counter())
    async with fresh_connections(seen) as http:
        async with Client(streamable_http_client(gw.url, http_client=http), mode="2026-07-28") as client:
            for i in range(CALLS):
                server = ("alpha", "gamma")[i % 2]
                assert text(await client.call_tool(f"{server}__echo", {"text": f"call {i}"})) == f"call {i}"
            names = await all_tools(client)  # every page, from whichever worker: cursors verify anywhere
            assert {"alpha__echo", "gamma__echo", "alpha__ask"} <= names
    assert set(seen.answered) == {"0", "1"}, seen
    assert seen.forwarded == 0  # stateless: answered where it landed
    assert '"worker": 0' in gw.log_text() and '"worker": 1' in gw.log_text()


async def test_handshake_era_sessions_are_routed_to_their_worker(gw: Workers) -> None:
    seen = Seen(Counter())
    async with fresh_connections(seen) as http:
        for _ in range(3):  # several sessions: their owners differ
            async with Client(streamable_http_client(gw.url, http_client=http), mode="legacy") as client:
                for i in range(CALLS // 3):
                    assert text(await client.call_tool("alpha__echo", {"text": f"call {i}"})) == f"call {i}"
                assert text(await client.call_tool("gamma__whoami", {})) == "gamma"
                assert "gamma__echo" in await all_tools(client)
    assert seen.forwarded > 0, seen  # some requests landed on the other worker and were passed on


async def test_handshake_era_questions_stream_across_workers(gw: Workers) -> None:
    """A tool that asks back: the question arrives on an SSE answer (maybe forwarded), the
    client's reply is a new POST (maybe to the other worker), and the call completes."""
    seen = Seen(Counter())
    async with fresh_connections(seen) as http:
        client = Client(streamable_http_client(gw.url, http_client=http), mode="legacy", elicitation_callback=answer)
        async with client:
            for i in range(6):
                server = ("alpha", "gamma")[i % 2]
                heard = await client.call_tool(f"{server}__ask", {"question": f"q{i}?"})
                assert text(heard) == f"{server} heard: re: q{i}?"
    assert seen.forwarded > 0, seen


async def test_stateless_era_input_required_retry_finds_its_parked_call(gw: Workers) -> None:
    """A handshake-era upstream asking a stateless-era client: the retry carries a requestState
    parked in one worker's memory, wherever the retry's connection lands."""
    seen = Seen(Counter())
    async with fresh_connections(seen) as http:
        client = Client(
            streamable_http_client(gw.url, http_client=http), mode="2026-07-28", elicitation_callback=answer
        )
        async with client:
            for i in range(6):
                heard = await client.call_tool("gamma__ask", {"question": f"q{i}?"})
                assert text(heard) == f"gamma heard: re: q{i}?"


async def test_legacy_sse_messages_reach_the_stream_owner(gw: Workers) -> None:
    seen = Seen(Counter())

    def factory(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return fresh_connections(seen, headers=headers, auth=auth)

    sse_url = gw.url.removesuffix("/mcp") + "/sse"
    async with sse_client(sse_url, httpx_client_factory=factory) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        for i in range(CALLS // 2):
            assert text(await s.call_tool("alpha__echo", {"text": f"sse {i}"})) == f"sse {i}"
    assert seen.forwarded > 0, seen


async def test_unknown_or_forged_session_ids_are_404(gw: Workers) -> None:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for session_id in ("w0-nope", "w1-nope", "w63-nope", "nope"):
            for _ in range(4):
                async with http.post(gw.url, json=body, headers={**headers, "Mcp-Session-Id": session_id}) as resp:
                    assert resp.status == 404, session_id


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _descendants(pid: int) -> Iterator[int]:
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in map(int, f.read().split()):
                    yield child
                    yield from _descendants(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_sigterm_stops_every_worker_and_stdio_child(
    alpha: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with serve_workers(tmp_path_factory.mktemp("sigterm"), alpha) as workers:
        async with Client(workers.url, mode="2026-07-28") as client:
            assert text(await client.call_tool("gamma__whoami", {})) == "gamma"
        below = list(_descendants(workers.process.pid))
        # Two workers, each with its own stdio server (python + whatever it started).
        assert len(below) >= 4, below
        workers.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(workers.process.wait(), 60) == 0
        for _ in range(100):
            if not any(_alive(pid) for pid in below):
                break
            await asyncio.sleep(0.1)
        assert [pid for pid in below if _alive(pid)] == []
        assert "shutdown: signal received" in workers.log_text()


async def test_a_worker_that_dies_is_replaced(
    alpha: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with serve_workers(tmp_path_factory.mktemp("respawn"), alpha) as workers:
        first = _children(workers.process.pid)
        assert len(first) == 2
        os.kill(first[1], signal.SIGKILL)
        for _ in range(300):
            if workers.log_text().count('"event": "worker ready"') >= 3:
                break
            await asyncio.sleep(0.1)
        assert "starting a worker again" in workers.log_text()
        seen = Seen(Counter())
        async with fresh_connections(seen) as http:
            async with Client(streamable_http_client(workers.url, http_client=http), mode="2026-07-28") as client:
                for i in range(CALLS):
                    assert text(await client.call_tool("alpha__echo", {"text": f"again {i}"})) == f"again {i}"
        assert set(seen.answered) == {"0", "1"}, seen
