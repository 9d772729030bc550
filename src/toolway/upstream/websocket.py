"""WebSocket upstream adapter: one JSON-RPC message per text frame, both ways.

Uses aiohttp's client on the gateway's pooled session (subprotocol `mcp`, as the
SDKs' WebSocket transports offer it). Like stdio, the wire does not say which request
a server's message belongs to: responses are matched by id, everything else goes to
`on_message`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import structlog

from toolway.upstream.channel import NO_AUTH, ChannelClosed, OnMessage, UpstreamAuth
from toolway.upstream.legacy_sse import Correlator

log = structlog.get_logger("toolway.upstream.websocket")

SUBPROTOCOL = "mcp"
HEARTBEAT_SECONDS = 20.0  # ping this often; a peer that misses a pong for half of it is gone
_CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)


class WebSocketChannel:
    """One WebSocket connection to an upstream server.

    A reader task owned by the channel (cancelled and awaited by `close`) dispatches
    incoming frames. When the socket closes or fails, waiting requests fail with
    `ChannelClosed` and `on_close(reason)` tells the owner. Binary frames and invalid
    JSON are logged and dropped.
    """

    session_id: str | None = None
    attributes_messages = False

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        http: aiohttp.ClientSession,
        *,
        on_close: Callable[[str], None] | None = None,
        on_message: OnMessage | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
        auth: UpstreamAuth = NO_AUTH,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._http = http
        self._auth = auth  # the gateway's credentials for this server, on the upgrade request
        self._on_close = on_close
        self.on_message = on_message
        self._heartbeat = heartbeat
        self._calls = Correlator(url)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return self._url

    async def open(self) -> None:
        """Connect (the caller bounds the wait).

        Raises:
            ChannelClosed: no connection, or the server refused the upgrade.
        """
        await self.close()
        self._calls.reset()
        try:
            ws = await self._http.ws_connect(
                self._url,
                protocols=(SUBPROTOCOL,),
                headers={**self._headers, **await self._auth.headers()},
                heartbeat=self._heartbeat,
                timeout=_CLOSE_TIMEOUT,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                self._auth.rejected()
            raise ChannelClosed(f"{self._url} refused the WebSocket upgrade (HTTP {exc.status})") from None
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"cannot connect to {self._url}: {exc}") from None
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name=f"ws-reader {self._url}")

    async def roundtrip(
        self, message: dict[str, Any], headers: dict[str, str], on_message: OnMessage | None = None
    ) -> dict[str, Any]:
        future = self._calls.expect(message["id"])
        try:
            await self._send(message)
            return await future
        finally:
            self._calls.forget(message["id"])

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        await self._send(message)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await ws.close()  # Bounded by _CLOSE_TIMEOUT.
        self._calls.fail_all("the gateway closed the connection")

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed or self._calls.closed_reason is not None:
            raise ChannelClosed(self._calls.closed_reason or f"the WebSocket to {self._url} is not open")
        try:
            await ws.send_str(orjson.dumps(message).decode())
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ChannelClosed(f"WebSocket to {self._url} failed: {exc}") from None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = f"{self._url} closed the WebSocket"
        try:
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._calls.deliver(frame.data, self.on_message)
                elif frame.type is aiohttp.WSMsgType.ERROR:
                    reason = f"WebSocket to {self._url} failed: {ws.exception()}"
                    break
                else:
                    log.warning("upstream sent a non-text WebSocket frame; dropped", peer=self._url, type=frame.type)
        except aiohttp.ClientError as exc:
            reason = f"WebSocket to {self._url} failed: {exc}"
        if ws.close_code is not None:
            reason += f" (close code {ws.close_code})"
        self._calls.fail_all(reason)
        if self._on_close is not None:
            self._on_close(reason)
