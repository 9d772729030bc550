"""The WebSocket channel against a scripted aiohttp WebSocket peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from toolway.upstream.channel import ChannelClosed
from toolway.upstream.websocket import WebSocketChannel

Message = dict[str, Any]
Serve = Callable[[web.Application], AbstractAsyncContextManager[str]]  # the `serve` fixture


class FakeWsServer:
    """At /mcp: records each text frame and, with `answer`, responds to requests echoing the method.
    The test writes frames of its own through `ws` and ends the connection with `close()`."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.frames: list[tuple[WSMsgType, Any]] = []
        self.headers: dict[str, str] = {}
        self.protocol: str | None = None
        self.answer = True
        self.ws: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/mcp", self.handle)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        self.headers = dict(request.headers)
        ws = web.WebSocketResponse(protocols=("mcp",))
        await ws.prepare(request)
        self.ws, self.protocol = ws, ws.ws_protocol
        self.connected.set()
        async for frame in ws:
            self.frames.append((frame.type, frame.data))
            message = orjson.loads(frame.data)
            self.received.append(message)
            if self.answer and "method" in message and "id" in message:
                await ws.send_str(orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {}}).decode())
        return ws

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(orjson.dumps(message).decode())


@pytest.fixture
async def peer(serve: Serve) -> AsyncIterator[tuple[FakeWsServer, str]]:
    server = FakeWsServer()
    async with serve(server.app) as base:
        yield server, base.replace("http://", "ws://") + "/mcp"


def request(msg_id: Any, method: str = "tools/list") -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method}


async def opened(
    http: aiohttp.ClientSession, url: str, received: list[Message] | None = None, closed: list[str] | None = None
) -> WebSocketChannel:
    channel = WebSocketChannel(
        url,
        {"X-Api-Key": "k"},
        http,
        on_close=closed.append if closed is not None else None,
        on_message=received.append if received is not None else None,
    )
    async with asyncio.timeout(5):
        await channel.open()
    return channel


async def test_roundtrip_and_notify_are_text_frames_under_the_mcp_subprotocol(
    peer: tuple[FakeWsServer, str], http: aiohttp.ClientSession
) -> None:
    server, url = peer
    channel = await opened(http, url)
    try:
        answers = await asyncio.gather(channel.roundtrip(request(1), {}), channel.roundtrip(request(2), {}))
        assert [a["id"] for a in answers] == [1, 2]
        await channel.notify({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})
        await channel.roundtrip(request(3), {})  # in order behind the notification
        assert server.received[2] == {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert {kind for kind, _ in server.frames} == {WSMsgType.TEXT}
        assert server.protocol == "mcp"
        assert server.headers["X-Api-Key"] == "k"
    finally:
        await channel.close()


async def test_everything_but_responses_goes_to_on_message_and_junk_is_dropped(
    peer: tuple[FakeWsServer, str], http: aiohttp.ClientSession
) -> None:
    server, url = peer
    received: list[Message] = []
    closed: list[str] = []
    channel = await opened(http, url, received, closed)
    server.answer = False
    try:
        call = asyncio.create_task(channel.roundtrip(request(7, "tools/call"), {}))
        await server.connected.wait()
        while not server.received:  # noqa: ASYNC110 - the request must be out first
            await asyncio.sleep(0.01)
        assert server.ws is not None
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
        ask = {"jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage", "params": {}}
        await server.ws.send_bytes(b'{"jsonrpc":"2.0","id":7,"result":{"binary":true}}')  # not text: dropped
        await server.ws.send_str("not json")
        await server.send([1, 2])
        await server.send(log)
        await server.send(ask)
        await server.send({"jsonrpc": "2.0", "id": 7, "result": {"ok": True}})
        assert await asyncio.wait_for(call, 5) == {"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}
        assert received == [log, ask]
        assert closed == []
    finally:
        await channel.close()


async def test_server_close_fails_waiting_calls_and_tells_the_owner(
    peer: tuple[FakeWsServer, str], http: aiohttp.ClientSession
) -> None:
    server, url = peer
    closed: list[str] = []
    channel = await opened(http, url, closed=closed)
    server.answer = False
    try:
        call = asyncio.create_task(channel.roundtrip(request(1), {}))
        while not server.received:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert server.ws is not None
        await server.ws.close(code=WSCloseCode.GOING_AWAY)
        with pytest.raises(ChannelClosed, match="closed the WebSocket") as info:
            await asyncio.wait_for(call, 5)
        assert "close code 1001" in str(info.value)
        assert closed == [str(info.value)]
        with pytest.raises(ChannelClosed):
            await channel.notify({"jsonrpc": "2.0", "method": "x"}, {})
    finally:
        await channel.close()
    assert len(closed) == 1  # close() itself never reports a loss


async def test_close_fails_waiting_calls_without_calling_on_close(
    peer: tuple[FakeWsServer, str], http: aiohttp.ClientSession
) -> None:
    server, url = peer
    closed: list[str] = []
    channel = await opened(http, url, closed=closed)
    server.answer = False
    call = asyncio.create_task(channel.roundtrip(request(1), {}))
    while not server.received:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await channel.close()
    with pytest.raises(ChannelClosed, match="the gateway closed the connection"):
        await call
    assert closed == []


async def test_a_refused_upgrade_names_the_status(serve: Serve, http: aiohttp.ClientSession) -> None:
    async with serve(web.Application()) as base:
        with pytest.raises(ChannelClosed, match=r"refused the WebSocket upgrade \(HTTP 404\)"):
            await WebSocketChannel(f"{base}/mcp", {}, http).open()


async def test_an_unreachable_server(serve: Serve, http: aiohttp.ClientSession) -> None:
    async with serve(web.Application()) as base:
        pass
    with pytest.raises(ChannelClosed, match="cannot connect"):
        await WebSocketChannel(base.replace("http://", "ws://") + "/mcp", {}, http).open()
