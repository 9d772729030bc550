"""WebSocket ingress: `/ws`, subprotocol `mcp`, one JSON-RPC message per text frame.

Pings and pongs are the server's (uvicorn's `ws_ping_interval`, set from the
keep-alive interval). Protocol errors close with a code that says what went wrong:
1003 for a binary frame, 1008 for a slow consumer, 1002 when the client offers
subprotocols but not `mcp`; oversized frames get uvicorn's 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from toolway.auth.identity import Identity
from toolway.ingress.connection import MessageConnection, Spawn
from toolway.protocol.layer import ProtocolLayer

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008


class WebSocketIngress:
    def __init__(self, layer: ProtocolLayer, spawn: Spawn, *, max_message_bytes: int, max_queued: int) -> None:
        self._layer = layer
        self._spawn = spawn
        self._max = max_message_bytes
        self._max_queued = max_queued
        self.open_connections = 0

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        prefix: str,
        server: str | None,
        identity: Identity | None = None,
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        offered = scope.get("subprotocols") or []
        if offered and "mcp" not in offered:
            await send({"type": "websocket.close", "code": CLOSE_PROTOCOL_ERROR, "reason": "subprotocol mcp required"})
            return
        await send({"type": "websocket.accept", "subprotocol": "mcp" if "mcp" in offered else None})
        conn = MessageConnection(
            self._layer,
            self._spawn,
            path=f"{prefix}/ws",
            scope=server,
            transport="websocket",
            client=f"{scope['client'][0]}:{scope['client'][1]}" if scope.get("client") else None,
            max_message_bytes=self._max,
            max_queued=self._max_queued,
            identity=identity,
        )

        async def write(body: bytes) -> None:
            await send({"type": "websocket.send", "text": body.decode()})

        writer = asyncio.ensure_future(conn.run_writer(write))
        self.open_connections += 1
        code, reason = 1000, ""
        try:
            while not conn.closed.is_set():
                receiving = asyncio.ensure_future(receive())
                closed = asyncio.ensure_future(conn.closed.wait())
                await asyncio.wait({receiving, closed}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if not receiving.done():
                    receiving.cancel()
                    code, reason = CLOSE_POLICY, conn.reason or "closed"
                    break
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    code = 0
                    break
                if message.get("text") is None:
                    code, reason = CLOSE_UNSUPPORTED_DATA, "MCP messages are text frames"
                    break
                await conn.receive(message["text"].encode())
        finally:
            self.open_connections -= 1
            conn.close(reason or "the client disconnected")
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if code:
                # Bounded: a client that stopped reading may never take the close frame either.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await send({"type": "websocket.close", "code": code, "reason": reason})
