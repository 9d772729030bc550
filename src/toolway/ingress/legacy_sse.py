"""The 2024-11-05 HTTP+SSE transport: GET `/sse` opens a stream, POSTs to its endpoint carry messages.

The stream's first event, `endpoint`, names the URL to POST to; every message for the
client — responses included — goes down the stream. Same sessions, aggregation and
filters as `/mcp`: each connection is one handshake-era (or stateless-era) client.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

from toolway.auth.identity import Identity, session_principal
from toolway.ingress.asgi import BodyTooLarge, read_body, respond, respond_json
from toolway.ingress.connection import MessageConnection, Spawn
from toolway.protocol.layer import ProtocolLayer

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class LegacySseIngress:
    def __init__(
        self,
        layer: ProtocolLayer,
        spawn: Spawn,
        *,
        max_message_bytes: int,
        keepalive_seconds: float,
        max_queued: int,
    ) -> None:
        self._layer = layer
        self._spawn = spawn
        self._max = max_message_bytes
        self._keepalive = keepalive_seconds
        self._max_queued = max_queued
        self._connections: dict[str, MessageConnection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    async def open(
        self,
        receive: Any,
        send: Any,
        prefix: str,
        server: str | None,
        client: str | None = None,
        identity: Identity | None = None,
    ) -> None:
        """GET `<prefix>/sse`: hold the stream open until the client goes away."""
        conn = MessageConnection(
            self._layer,
            self._spawn,
            path=f"{prefix}/sse",
            scope=server,
            transport="sse",
            client=client,
            max_message_bytes=self._max,
            max_queued=self._max_queued,
            keepalive_seconds=self._keepalive,
            identity=identity,
        )
        self._connections[conn.id] = conn
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        endpoint = f"{prefix}/messages?session_id={conn.id}".encode()
        await send(
            {"type": "http.response.body", "body": b"event: endpoint\ndata: " + endpoint + b"\n\n", "more_body": True}
        )

        async def write(body: bytes) -> None:
            frame = b"event: message\ndata: " + body + b"\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})

        async def keepalive() -> None:
            await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        writer = asyncio.ensure_future(conn.run_writer(write, keepalive))
        watcher = asyncio.ensure_future(until_disconnect())
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            await asyncio.wait({writer, watcher, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.close(conn.reason or "the client closed the stream")
            del self._connections[conn.id]
            for task in (writer, watcher, closed):
                task.cancel()
            for task in (writer, watcher, closed):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def post(self, scope: dict[str, Any], receive: Any, send: Any, identity: Identity | None = None) -> None:
        """POST `<prefix>/messages?session_id=…`: one client message; the answer goes down the stream.

        The poster must be the principal that opened the stream: anyone else is told, as for
        an unknown id, that there is no such session.
        """
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        conn = self._connections.get((query.get("session_id") or [""])[0])
        if conn is None or session_principal(conn.identity) != session_principal(identity):
            await respond_json(send, 404, {"error": "unknown or closed session_id: open GET /sse first"})
            return
        try:
            body = await read_body(receive, self._max)
        except BodyTooLarge:
            await respond_json(send, 413, {"error": f"message exceeds the gateway's limit of {self._max} bytes"})
            return
        except ConnectionResetError:
            return
        await conn.receive(body)
        await respond(send, 202)

    def close_all(self) -> None:
        for conn in list(self._connections.values()):
            conn.close("the gateway is shutting down")
