"""Serving the fixture upstream over each transport: Streamable HTTP (either era), HTTP+SSE,
WebSocket and stdio, and a `ReadyServer` that announces `READY <port>` once it accepts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Generator, Sequence
from typing import NoReturn

import anyio
import mcp_types
import uvicorn
from aiohttp import WSMsgType, web
from mcp.server import MCPServer
from mcp.server.runner import serve_loop
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toolway.testing.recording import HeaderRecorder, record
from toolway.testing.session_ledger import LedgerApp

HOST = "127.0.0.1"


class HandshakeOnlyApp:
    """ASGI wrapper that makes the SDK's Streamable HTTP app answer like a 2025-era server.

    The SDK routes a request whose ``MCP-Protocol-Version`` header is not a handshake version
    to its 2026-07-28 entry. A server from before that revision never does; this wrapper gives
    such a request what ``mcp`` 1.x's ``StreamableHTTPServerTransport`` answers instead:

    - stateful, no ``Mcp-Session-Id``: HTTP 400
      ``{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: Missing session ID"}}``
    - stateful with a session id, or stateless: HTTP 400, code -32600,
      ``Bad Request: Unsupported protocol version: <v>. Supported versions: <list>``
    - an ``initialize`` POST goes through whatever its header says (1.x exempts it from
      header checks), with the header dropped so the SDK serves it as a handshake.
    """

    def __init__(self, app: ASGIApp, *, stateless: bool) -> None:
        self.app = app
        self.stateless = stateless

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        version = _header(headers, b"mcp-protocol-version")
        if version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            body, replay = await _buffer_body(receive)
            if _is_initialize(body):
                stripped = [(k, v) for k, v in headers if k.lower() != b"mcp-protocol-version"]
                await self.app({**scope, "headers": stripped}, replay, send)
                return
        if not self.stateless and _header(headers, b"mcp-session-id") is None:
            message = "Bad Request: Missing session ID"
        else:
            supported = ", ".join(HANDSHAKE_PROTOCOL_VERSIONS)
            message = f"Bad Request: Unsupported protocol version: {version}. Supported versions: {supported}"
        await _send_json_error(send, 400, INVALID_REQUEST, message)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k.lower() == name), None)


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole request body; return it and a ``receive`` that replays it, then defers."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _is_initialize(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"


async def _send_json_error(send: Send, status: int, code: int, message: str) -> None:
    # Byte-for-byte what the SDK's JSONRPCError.model_dump_json(exclude_unset=True) gives.
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, separators=(",", ":")
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ReadyServer(uvicorn.Server):
    """uvicorn server that announces ``READY <port>`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, *, name: str, path: str = "/mcp") -> None:
        super().__init__(config)
        self.name = name
        self.path = path

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        # Read back from the listening socket: with --port 0 only the kernel knows the port.
        port = self.servers[0].sockets[0].getsockname()[1]
        _announce(self.name, f"http://{HOST}:{port}{self.path}", port)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises a captured signal after its graceful shutdown, so SIGTERM would end
        # the process as "killed by signal"; we want a plain exit with status 0.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _announce(name: str, url: str, port: int) -> None:
    sys.stderr.write(f"{name} listening on {url}\n")
    sys.stderr.flush()
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


async def serve_http(
    server: MCPServer, *, era: str, port: int, json_response: bool, stateless: bool, record_headers: str | None = None
) -> None:
    app: ASGIApp = server.streamable_http_app(json_response=json_response, stateless_http=stateless)
    if era == "handshake":
        app = HandshakeOnlyApp(app, stateless=stateless)
    if record_headers is not None:
        app = HeaderRecorder(app, record_headers)
    app = LedgerApp(app)  # the sessions clients open, and the /debug/ routes (session_ledger.py)
    await _serve_asgi(app, port=port, name=f"upstream {server.name}", path="/mcp")


async def serve_sse(server: MCPServer, *, era: str, port: int, record_headers: str | None = None) -> None:
    # The SDK's own app serves both eras (the client's first request decides); a server of the
    # 2024-11-05 transport predates 2026-07-28, so `--era handshake` gets the same routes over
    # the SDK's transport with its handshake-only loop.
    app: ASGIApp = server.sse_app(host=HOST) if era == "both" else _handshake_sse_app(server)
    if record_headers is not None:
        app = HeaderRecorder(app, record_headers)
    await _serve_asgi(app, port=port, name=f"upstream {server.name}", path="/sse")


def _handshake_sse_app(server: MCPServer) -> Starlette:
    security = TransportSecuritySettings(allowed_hosts=[f"{HOST}:*"], allowed_origins=[f"http://{HOST}:*"])
    transport = SseServerTransport("/messages/", security_settings=security)

    async def handle_sse(request: Request) -> Response:
        async with transport.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await _serve_connection(server, read, write, era="handshake")
        return Response()

    routes = [
        Route("/sse", endpoint=handle_sse, methods=["GET"]),
        Mount("/messages/", app=transport.handle_post_message),
    ]
    return Starlette(routes=routes)


async def _serve_asgi(app: ASGIApp, *, port: int, name: str, path: str) -> None:
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="on",
        # Open SSE streams would otherwise hold a SIGTERM shutdown open indefinitely.
        timeout_graceful_shutdown=2,
    )
    await ReadyServer(config, name=name, path=path).serve()


async def serve_ws(server: MCPServer, *, era: str, port: int, record_headers: str | None = None) -> None:
    """WebSocket at ``/mcp``, one JSON-RPC message per text frame (the SDK has no WebSocket server)."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        if record_headers is not None:
            record(record_headers, request.method, request.path, request.headers.items())
        ws = web.WebSocketResponse(protocols=("mcp",))
        await ws.prepare(request)
        await _bridge_websocket(ws, server, era=era)
        return ws

    app = web.Application()
    app.router.add_get("/mcp", handle)
    # Open sockets would otherwise hold a SIGTERM shutdown open for aiohttp's default 60 s.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        bound = int(runner.addresses[0][1])
        _announce(f"upstream {server.name}", f"ws://{HOST}:{bound}/mcp", bound)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _signum in signals:
                break
    finally:
        await runner.cleanup()


async def _bridge_websocket(ws: web.WebSocketResponse, server: MCPServer, *, era: str) -> None:
    """Serve one connection: frames in and out through the memory streams an SDK transport hands a server."""
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

    async def frames_in() -> None:
        async with read_writer:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(frame.data, by_name=False)
                except ValidationError as exc:
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def frames_out() -> None:
        async with write_reader:
            async for session_message in write_reader:
                if ws.closed:
                    continue  # The client is gone: drain, so the server never blocks on a dead socket.
                with contextlib.suppress(ConnectionResetError):  # It may go between the check and the send.
                    await ws.send_str(session_message.message.model_dump_json(by_alias=True, exclude_unset=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(frames_in)
        tg.start_soon(frames_out)
        await _serve_connection(server, read_stream, write_stream, era=era)  # Returns when frames_in ends.
        tg.cancel_scope.cancel()


async def _serve_connection(
    server: MCPServer,
    read: ReadStream[SessionMessage | Exception],
    write: WriteStream[SessionMessage],
    *,
    era: str,
) -> None:
    """Serve one connection's streams: both eras (the first request decides), or the handshake era only."""
    # MCPServer has no public handle on its low-level server; mcp.Client reads it the same way.
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    if era == "both":
        await lowlevel.run(read, write, lowlevel.create_initialization_options())
        return
    # `Server.run` serves both eras; `serve_loop` is the SDK's handshake-only driver, the one its
    # Streamable HTTP sessions use. There a `server/discover` is -32601 Method not found, and
    # every request before `initialize` is refused, as by a server that predates 2026-07-28.
    async with lowlevel.lifespan(lowlevel) as state:
        await serve_loop(
            lowlevel, read, write, lifespan_state=state, init_options=lowlevel.create_initialization_options()
        )


async def serve_stdio(server: MCPServer, *, era: str) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_exit_on_signal, server.name)
        if era == "both":
            await server.run_stdio_async()
        else:
            await _serve_stdio_handshake_only(server)
        tg.cancel_scope.cancel()


async def _serve_stdio_handshake_only(server: MCPServer) -> None:
    async with stdio_server() as (read_stream, write_stream):
        try:
            await _serve_connection(server, read_stream, write_stream, era="handshake")
        finally:
            # stdio_server's writer task ends only when the write stream closes.
            await write_stream.aclose()


async def _exit_on_signal(name: str) -> None:
    # Through the event loop: a plain handler may not run while the loop waits on its selector.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            exit_now(name, signum)


def exit_now(name: str, signum: int) -> NoReturn:
    sys.stderr.write(f"upstream {name} stopping on {signal.Signals(signum).name}\n")
    sys.stderr.flush()
    # The SDK reads stdin in a worker thread that no cancellation can interrupt, so an orderly
    # stdio shutdown would wait for the parent to close our stdin. There is nothing to flush.
    os._exit(0)
