"""The HTTP+SSE channel (2024-11-05 transport) against a scripted peer, and the `auto` probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from toolway.upstream.channel import ChannelClosed
from toolway.upstream.http import UpstreamHttpError
from toolway.upstream.legacy_sse import (
    Correlator,
    LegacySseChannel,
    NotAnEventStream,
    says_wrong_transport,
    sse_urls,
)

Message = dict[str, Any]
Serve = Callable[[web.Application], AbstractAsyncContextManager[str]]  # the `serve` fixture


class FakeSseServer:
    """GET /sse: an event stream that names `endpoint`, then writes whatever the test queues
    (None ends it). POST /messages/: records the message and answers `post_status`; with
    `answer` set, a request gets a response event echoing its method."""

    def __init__(self, endpoint: str = "/messages/?session_id=abc") -> None:
        self.endpoint = endpoint
        self.events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.posted: list[tuple[Message, dict[str, str]]] = []
        self.stream_headers: dict[str, str] = {}
        self.post_status = 202
        self.post_body = b"Accepted"
        self.answer = True
        self.app = web.Application()
        self.app.router.add_get("/sse", self.stream)
        self.app.router.add_post("/messages/", self.post)

    def send(self, message: Any) -> None:
        self.events.put_nowait(b"event: message\ndata: " + orjson.dumps(message) + b"\n\n")

    def end(self) -> None:
        self.events.put_nowait(None)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.stream_headers = dict(request.headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": hello\n\nevent: endpoint\ndata: " + self.endpoint.encode() + b"\n\n")
        while (chunk := await self.events.get()) is not None:
            await resp.write(chunk)
        return resp

    async def post(self, request: web.Request) -> web.Response:
        message = orjson.loads(await request.read())
        self.posted.append((message, dict(request.headers)))
        if self.answer and "method" in message and "id" in message:
            self.send({"jsonrpc": "2.0", "id": message["id"], "result": {"method": message["method"]}})
        return web.Response(status=self.post_status, body=self.post_body)


@pytest.fixture
async def peer(serve: Serve) -> AsyncIterator[tuple[FakeSseServer, str]]:
    server = FakeSseServer()
    async with serve(server.app) as base:
        yield server, base
        server.end()


def request(msg_id: Any, method: str = "tools/list") -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method}


async def opened(
    http: aiohttp.ClientSession, url: str, received: list[Message] | None = None, closed: list[str] | None = None
) -> LegacySseChannel:
    channel = LegacySseChannel(
        url,
        {"X-Api-Key": "k"},
        http,
        on_close=closed.append if closed is not None else None,
        on_message=received.append if received is not None else None,
    )
    async with asyncio.timeout(5):
        await channel.open()
    return channel


async def test_open_resolves_the_endpoint_against_the_stream_url(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    channel = await opened(http, f"{base}/sse")
    try:
        assert channel.endpoint == f"{base}/messages/?session_id=abc"
        assert server.stream_headers["Accept"] == "text/event-stream"
        assert server.stream_headers["X-Api-Key"] == "k"
    finally:
        await channel.close()


async def test_roundtrip_posts_to_the_endpoint_and_resolves_by_id(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    channel = await opened(http, f"{base}/sse")
    try:
        answers = await asyncio.gather(
            channel.roundtrip(request(1), {"MCP-Protocol-Version": "2025-11-25"}),
            channel.roundtrip(request(2, "prompts/list"), {}),
        )
        assert answers == [
            {"jsonrpc": "2.0", "id": 1, "result": {"method": "tools/list"}},
            {"jsonrpc": "2.0", "id": 2, "result": {"method": "prompts/list"}},
        ]
        message, headers = server.posted[0]
        assert message == request(1)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Api-Key"] == "k"
        assert headers["MCP-Protocol-Version"] == "2025-11-25"
    finally:
        await channel.close()


async def test_everything_but_responses_goes_to_on_message_in_order(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    received: list[Message] = []
    channel = await opened(http, f"{base}/sse", received)
    server.answer = False
    try:
        call = asyncio.create_task(channel.roundtrip(request(7, "tools/call"), {}))
        progress = {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "t", "progress": 1},
        }
        ask = {"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": {}}
        server.send(progress)
        server.send(ask)
        server.send({"jsonrpc": "2.0", "id": 99, "result": {}})  # answers nothing we asked: dropped
        server.send({"jsonrpc": "2.0", "id": 7, "result": {"done": True}})
        assert await asyncio.wait_for(call, 5) == {"jsonrpc": "2.0", "id": 7, "result": {"done": True}}
        assert received == [progress, ask]
        await channel.notify({"jsonrpc": "2.0", "id": "s1", "result": {"action": "decline"}}, {})
        assert server.posted[-1][0] == {"jsonrpc": "2.0", "id": "s1", "result": {"action": "decline"}}
    finally:
        await channel.close()


async def test_malformed_events_are_dropped_not_fatal(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    received: list[Message] = []
    closed: list[str] = []
    channel = await opened(http, f"{base}/sse", received, closed)
    try:
        for junk in (b"not json", b"[1, 2]", b'"text"', b'{"jsonrpc": "2.0"}'):
            server.events.put_nowait(b"data: " + junk + b"\n\n")
        server.events.put_nowait(b"event: other\ndata: {}\n\n")  # unknown event types are ignored
        assert await channel.roundtrip(request(1), {}) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"method": "tools/list"},
        }
        assert received == [] and closed == []
    finally:
        await channel.close()


async def test_stream_end_fails_waiting_calls_and_tells_the_owner(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    closed: list[str] = []
    channel = await opened(http, f"{base}/sse", closed=closed)
    server.answer = False
    try:
        call = asyncio.create_task(channel.roundtrip(request(1), {}))
        while not server.posted:  # noqa: ASYNC110 - the request must be out before the stream ends
            await asyncio.sleep(0.01)
        server.end()
        with pytest.raises(ChannelClosed, match="ended the event stream"):
            await asyncio.wait_for(call, 5)
        assert closed == [f"{base}/sse ended the event stream"]
        with pytest.raises(ChannelClosed, match="ended the event stream"):
            await channel.roundtrip(request(2), {})  # fails at once, posts nothing
        assert len(server.posted) == 1
    finally:
        await channel.close()
    assert closed == [f"{base}/sse ended the event stream"]  # close() itself never reports a loss


async def test_close_fails_waiting_calls_without_calling_on_close(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    closed: list[str] = []
    channel = await opened(http, f"{base}/sse", closed=closed)
    server.answer = False
    call = asyncio.create_task(channel.roundtrip(request(1), {}))
    while not server.posted:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await channel.close()
    with pytest.raises(ChannelClosed, match="the gateway closed the connection"):
        await call
    assert closed == []


@pytest.mark.parametrize(
    ("status", "error", "match"), [(404, ChannelClosed, "no longer knows"), (400, UpstreamHttpError, "HTTP 400")]
)
async def test_refused_posts(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession, status: int, error: type[Exception], match: str
) -> None:
    server, base = peer
    channel = await opened(http, f"{base}/sse")
    server.answer, server.post_status, server.post_body = False, status, b"Could not parse message"
    try:
        with pytest.raises(error, match=match):
            await channel.roundtrip(request(1), {})
    finally:
        await channel.close()


async def test_a_get_that_is_not_an_event_stream(peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession) -> None:
    _, base = peer
    channel = LegacySseChannel(f"{base}/mcp", {}, http)
    with pytest.raises(NotAnEventStream, match="HTTP 404"):
        await channel.open()


async def test_unreachable_server(http: aiohttp.ClientSession, serve: Serve) -> None:
    async with serve(web.Application()) as base:
        pass  # now closed
    with pytest.raises(ChannelClosed, match="cannot connect") as info:
        await LegacySseChannel(f"{base}/sse", {}, http).open()
    assert not isinstance(info.value, NotAnEventStream)


async def test_stream_that_ends_before_naming_its_endpoint(serve: Serve, http: aiohttp.ClientSession) -> None:
    async def empty(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": nothing to say\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/sse", empty)
    closed: list[str] = []
    async with serve(app) as base:
        channel = LegacySseChannel(f"{base}/sse", {}, http, on_close=closed.append)
        with pytest.raises(ChannelClosed, match="before naming its message endpoint"):
            await channel.open()
    assert closed == []  # it never opened, so it never closed either


async def test_waiting_for_the_endpoint_is_bounded_by_the_caller(
    peer: tuple[FakeSseServer, str], http: aiohttp.ClientSession
) -> None:
    server, base = peer
    server.endpoint = ""  # an empty endpoint names nothing: the channel keeps waiting
    channel = LegacySseChannel(f"{base}/sse", {}, http)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await channel.open()
    with pytest.raises(ChannelClosed):
        await channel.notify({"jsonrpc": "2.0", "method": "x"}, {})


async def test_an_endpoint_on_another_origin_is_refused(serve: Serve, http: aiohttp.ClientSession) -> None:
    server = FakeSseServer(endpoint="http://elsewhere.test/messages/")
    async with serve(server.app) as base:
        channel = LegacySseChannel(f"{base}/sse", {"Authorization": "Bearer secret"}, http)
        with pytest.raises(ChannelClosed, match="another origin"):
            await channel.open()
        server.end()


# --- the `auto` probes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "wrong"),
    [
        (404, b"Not Found", True),
        (405, b"Method Not Allowed", True),
        (400, b"session_id is required", True),
        (400, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Missing session ID"}}', False),
        (200, b'{"jsonrpc":"2.0","id":"toolway-transport-probe","result":{}}', False),
        (500, b"oops", False),
    ],
)
async def test_says_wrong_transport(
    serve: Serve, http: aiohttp.ClientSession, status: int, body: bytes, wrong: bool
) -> None:
    seen: list[Message] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(orjson.loads(await request.read()))
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_post("/mcp", answer)
    async with serve(app) as base:
        assert await says_wrong_transport(http, f"{base}/mcp", {}) is wrong
    assert seen[0]["method"] == "ping"


async def test_says_wrong_transport_needs_a_reachable_server(serve: Serve, http: aiohttp.ClientSession) -> None:
    async with serve(web.Application()) as base:
        pass
    with pytest.raises(ChannelClosed):
        await says_wrong_transport(http, f"{base}/mcp", {})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:1/mcp", ["http://h:1/mcp", "http://h:1/sse"]),
        ("http://h:1/api/mcp/", ["http://h:1/api/mcp/", "http://h:1/api/sse"]),
        ("http://h:1/mcp?key=1", ["http://h:1/mcp?key=1", "http://h:1/sse?key=1"]),
        ("http://h:1", ["http://h:1", "http://h:1/sse"]),
        ("http://h:1/sse", ["http://h:1/sse"]),
    ],
)
def test_sse_urls(url: str, expected: list[str]) -> None:
    assert sse_urls(url) == expected


# --- the correlator alone -----------------------------------------------------------------------


async def test_correlator_fails_and_forgets_cleanly() -> None:
    calls = Correlator("peer")
    first = calls.expect(1)
    calls.fail_all("gone")
    with pytest.raises(ChannelClosed, match="gone"):
        await first
    calls.forget(1)
    with pytest.raises(ChannelClosed, match="gone"):
        calls.expect(2)
    calls.reset()
    second = calls.expect(2)
    calls.deliver(b'[{"jsonrpc":"2.0","id":2,"result":{}}]', None)  # a batch is taken apart
    assert second.result() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    calls.forget(2)
    unanswered = calls.expect(3)
    calls.forget(3)
    assert unanswered.cancelled()
