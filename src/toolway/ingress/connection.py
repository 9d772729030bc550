"""One downstream connection that carries many messages both ways: legacy SSE, WebSocket, stdio.

Each message from the client goes to the protocol layer with an event stream of its
own; a pump copies that stream's messages into the connection's outbound queue, and
another copies the session's own stream (list changes, resource updates) once the
client has initialized. The outbound queue is bounded: a client that does not read
is disconnected with a logged reason instead of growing the gateway's memory.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import structlog

from toolway.auth.identity import Identity
from toolway.protocol import jsonrpc
from toolway.protocol.errors import InvalidRequest, ToolwayError, to_error
from toolway.protocol.layer import Inbound, ProtocolLayer, new_request_id
from toolway.sessions.owner import tagged
from toolway.sessions.streams import EventStream

log = structlog.get_logger("toolway.ingress")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
Send = Callable[[bytes], Awaitable[None]]


class SlowConsumer(Exception):
    """The client stopped reading: its outbound queue is full."""


class MessageConnection:
    """The gateway side of one message-oriented connection."""

    def __init__(
        self,
        layer: ProtocolLayer,
        spawn: Spawn,
        *,
        path: str,
        scope: str | None,
        transport: str,
        max_message_bytes: int,
        max_queued: int = 1024,
        keepalive_seconds: float = 15.0,
        client: str | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.id = tagged(secrets.token_hex(16))
        self.identity = identity  # authenticated when the connection opened; None without authentication
        self._layer = layer
        self._spawn = spawn
        self._path = path
        self._scope = scope
        self._transport = transport
        self._client = client
        self._max_message = max_message_bytes
        self._keepalive = keepalive_seconds
        self._outbound: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=max_queued)
        self._pumps: set[asyncio.Task[None]] = set()
        self.session_id: str | None = None  # the handshake-era session, once initialized
        self.closed = asyncio.Event()
        self.reason: str | None = None

    async def receive(self, raw: bytes) -> None:
        """One message from the client (a frame, a line, a POST body)."""
        if self.closed.is_set():
            return
        if len(raw) > self._max_message:
            exc: ToolwayError = InvalidRequest(f"message exceeds the gateway's limit of {self._max_message} bytes")
            self._queue_error(None, exc)
            return
        try:
            message = jsonrpc.decode(raw)
        except ToolwayError as error:
            msg_id = jsonrpc.request_id_of(raw) if isinstance(error, InvalidRequest) else None
            self._queue_error(msg_id, error)
            return
        inbound = Inbound(
            message=message,
            path=self._path,
            scope=self._scope,
            request_id=new_request_id(None),
            session_id=self.session_id,
            transport=self._transport,
            client=self._client,
            identity=self.identity,
        )
        stream = EventStream(with_ids=False)
        self._spawn(self._layer.handle(inbound, stream))
        self._start(self._pump(stream, session=False))

    async def run_writer(self, send: Send, keepalive: Callable[[], Awaitable[None]] | None = None) -> None:
        """Copy queued messages to the client until the connection closes.

        `keepalive` is called whenever the line has been quiet for the keep-alive interval.
        """
        while True:
            try:
                async with asyncio.timeout(self._keepalive if keepalive is not None else None):
                    item = await self._outbound.get()
            except TimeoutError:
                assert keepalive is not None
                await keepalive()
                continue
            if item is None:
                return
            await send(item)

    def close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.reason = reason
        self.closed.set()
        for task in self._pumps:
            task.cancel()
        if self.session_id is not None:
            try:
                self._layer.end_session(self.session_id, self._path, self.identity)
            except ToolwayError:
                pass
        # Unblock the writer even when the queue is full.
        while self._outbound.full():
            self._outbound.get_nowait()
        self._outbound.put_nowait(None)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._spawn(coro)
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    async def _pump(self, stream: EventStream, *, session: bool) -> None:
        position = 0
        while True:
            bodies, position = stream.bodies_after(position)
            for body in bodies:
                self._queue(body)
            if stream.session_id is not None and self.session_id is None:
                self.session_id = stream.session_id
                try:
                    session_stream = self._layer.session(self.session_id, self._path, self.identity).standalone
                except ToolwayError:
                    return
                self._start(self._pump(session_stream, session=True))
            if stream.closed or self.closed.is_set():
                return
            await stream.wait(self._keepalive if session else 3600.0)

    def _queue(self, body: bytes) -> None:
        try:
            self._outbound.put_nowait(body)
        except asyncio.QueueFull:
            log.warning(
                "disconnecting a client that stopped reading", transport=self._transport, queued=self._outbound.qsize()
            )
            self.close("slow consumer: the outbound queue is full")

    def _queue_error(self, msg_id: Any, exc: ToolwayError) -> None:
        self._queue(orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "error": to_error(exc)}))
