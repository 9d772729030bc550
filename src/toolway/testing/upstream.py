"""A fixture MCP server for tests, built on the official SDK's ``MCPServer``.

Run it as ``python -m toolway.testing.upstream --name NAME [options]``::

    --name NAME                      required; appears in tool results, resources and log lines
    --transport stdio|http|sse|ws    default stdio; sse is the 2024-11-05 HTTP+SSE transport
    --era both|handshake             default both; ``handshake`` acts like a pre-2026-07-28 server
    --port N                         http, sse, ws; default 0 (ephemeral); binds 127.0.0.1
    --json-response / --sse-response http only; default --sse-response
    --stateless                      http only; the SDK's stateless_http mode
    --extra-tools N                  add tools t000..t(N-1), each returning its own name
    --page-size N                    paginate tools/list, N tools a page (0, the default: one page)

What it serves: tools ``echo``, ``add``, ``whoami``, ``slow``, ``fail`` and ``crash``, and the
tools that talk back from ``duplex_tools`` (``progress``, ``log``, ``ask``, ``sample``, ``roots``,
``grow``, ``touch``, ``subscriptions``); the prompt
``greet`` (with completion of its ``name`` argument); the resources ``ui://NAME/page`` and
``file:///NAME/readme.txt``; the resource template ``mem://NAME/{key}``.

Over http, sse and ws the process prints exactly one line, ``READY <port>``, to stdout once it
accepts connections. It serves Streamable HTTP at ``/mcp``, the HTTP+SSE stream at ``/sse`` (messages
to ``/messages/``, as the SDK's ``sse_app``), and WebSocket (subprotocol ``mcp``) at ``ws://…/mcp``.
Over stdio, stdout carries nothing but protocol. Either way it writes
``upstream NAME started`` to stderr first, logs to stderr, and exits with status 0 on SIGTERM
or SIGINT (status 3 when the ``crash`` tool is called).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Generator, Mapping, Sequence
from typing import Any, NoReturn

import anyio
import mcp_types
import uvicorn
from aiohttp import WSMsgType, web
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.runner import serve_loop
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, Completion, PromptReference
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toolway.testing.duplex_tools import add_duplex_tools

__all__ = ["HandshakeOnlyApp", "ReadyServer", "ToolPages", "build_server", "main"]

ERAS = ("both", "handshake")
TRANSPORTS = ("stdio", "http", "sse", "ws")
CRASH_EXIT_CODE = 3
HOST = "127.0.0.1"


def build_server(name: str, *, extra_tools: int = 0, page_size: int = 0) -> MCPServer:
    """Build the fixture server called ``name``.

    Raises:
        ValueError: ``extra_tools`` or ``page_size`` is negative.
    """
    if extra_tools < 0 or page_size < 0:
        raise ValueError("extra_tools and page_size must not be negative")
    # log_level WARNING: the SDK otherwise configures the root logger at INFO.
    server: MCPServer = MCPServer(name, log_level="WARNING")

    @server.tool(description="Return the text unchanged.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Return the name of this upstream.")
    def whoami() -> str:
        return name

    cancelled = [0]

    @server.tool(description="Sleep for the given number of seconds, then return 'done'.")
    async def slow(seconds: float) -> str:
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            cancelled[0] += 1  # the client (through the gateway) cancelled this call
            raise
        return "done"

    @server.tool(description="How many `slow` calls were cancelled so far.")
    def cancellations() -> str:
        return str(cancelled[0])

    @server.tool(description="Fail with the given message (a tool result with isError: true).")
    def fail(message: str) -> str:
        # ToolError, not a bare exception: the SDK then puts our message in the result verbatim.
        raise ToolError(message)

    @server.tool(description=f"Exit the upstream process at once with status {CRASH_EXIT_CODE}.")
    def crash() -> str:
        sys.stderr.write(f"upstream {name} crashing on request\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)

    width = max(3, len(str(extra_tools - 1)))
    for index in range(extra_tools):
        tool_name = f"t{index:0{width}d}"
        server.add_tool(_named_echo(tool_name), name=tool_name, description=f"Return {tool_name!r}.")

    @server.prompt(description="Greet someone on behalf of this upstream.")
    def greet(name: str) -> str:
        return f"Hello, {name}, from {server.name}"

    # The SDK's completion() decorator carries no annotations.
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "name":
            values = [value for value in ("alice", "bob") if value.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    @server.resource(f"ui://{name}/page", name="page", mime_type="text/html")
    def page() -> str:
        return f"<h1>{name}</h1>"

    @server.resource(f"file:///{name}/readme.txt", name="readme", mime_type="text/plain")
    def readme() -> str:
        return f"readme of {name}"

    @server.resource(f"mem://{name}/{{key}}", name="memory", mime_type="text/plain")
    def memory(key: str) -> str:
        return f"{name}:{key}"

    add_duplex_tools(server, name)
    if page_size:
        server.middleware.append(ToolPages(page_size))
    return server


def _named_echo(tool_name: str) -> Any:
    def tool() -> str:
        return tool_name

    return tool


class ToolPages:
    """Server middleware that serves ``tools/list`` in pages of ``page_size`` tools.

    ``MCPServer`` always answers ``tools/list`` in one page; the protocol's cursor is honoured
    here instead, on the wire result. Cursors are opaque to clients (``offset:N``).
    """

    def __init__(self, page_size: int) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = page_size

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Pass everything through; cut a ``tools/list`` result down to the requested page.

        Raises:
            MCPError: INVALID_PARAMS for a cursor this middleware did not hand out.
        """
        if ctx.method != "tools/list":
            return await call_next(ctx)
        start = _cursor_offset(ctx.params)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        tools = list(result.get("tools") or [])
        end = start + self.page_size
        page = {**result, "tools": tools[start:end]}
        page.pop("nextCursor", None)
        if end < len(tools):
            page["nextCursor"] = f"offset:{end}"
        return page


def _cursor_offset(params: Mapping[str, Any] | None) -> int:
    cursor = (params or {}).get("cursor")
    if cursor is None:
        return 0
    prefix, _, digits = str(cursor).partition(":")
    if prefix != "offset" or not digits.isdigit():
        raise MCPError(code=INVALID_PARAMS, message="Invalid cursor", data=cursor)
    return int(digits)


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


async def _serve_http(server: MCPServer, *, era: str, port: int, json_response: bool, stateless: bool) -> None:
    app: ASGIApp = server.streamable_http_app(json_response=json_response, stateless_http=stateless)
    if era == "handshake":
        app = HandshakeOnlyApp(app, stateless=stateless)
    await _serve_asgi(app, port=port, name=f"upstream {server.name}", path="/mcp")


async def _serve_sse(server: MCPServer, *, era: str, port: int) -> None:
    # The SDK's own app serves both eras (the client's first request decides); a server of the
    # 2024-11-05 transport predates 2026-07-28, so `--era handshake` gets the same routes over
    # the SDK's transport with its handshake-only loop.
    app = server.sse_app(host=HOST) if era == "both" else _handshake_sse_app(server)
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


async def _serve_ws(server: MCPServer, *, era: str, port: int) -> None:
    """WebSocket at ``/mcp``, one JSON-RPC message per text frame (the SDK has no WebSocket server)."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
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


async def _serve_stdio(server: MCPServer, *, era: str) -> None:
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
            _exit_now(name, signum)


def _exit_now(name: str, signum: int) -> NoReturn:
    sys.stderr.write(f"upstream {name} stopping on {signal.Signals(signum).name}\n")
    sys.stderr.flush()
    # The SDK reads stdin in a worker thread that no cancellation can interrupt, so an orderly
    # stdio shutdown would wait for the parent to close our stdin. There is nothing to flush.
    os._exit(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m toolway.testing.upstream", description="Toolway's fixture MCP server for tests."
    )
    parser.add_argument("--name", required=True, help="the upstream's name, used in its outputs")
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio")
    parser.add_argument("--era", choices=ERAS, default="both", help="handshake: act like a pre-2026 server")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default 0, ephemeral)")
    responses = parser.add_mutually_exclusive_group()
    responses.add_argument("--json-response", dest="json_response", action="store_true", default=None)
    responses.add_argument("--sse-response", dest="json_response", action="store_false")
    parser.add_argument("--stateless", action="store_true", default=None, help="http: stateless_http=True")
    parser.add_argument("--extra-tools", type=int, default=0, metavar="N", help="add tools t000..t(N-1)")
    parser.add_argument("--page-size", type=int, default=0, metavar="N", help="paginate tools/list (0: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fixture server as the command line in ``argv`` asks; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.transport != "http":
        http_only = {"--json-response/--sse-response": args.json_response, "--stateless": args.stateless}
        given = [flag for flag, value in http_only.items() if value is not None]
        if given:
            parser.error(f"{', '.join(given)}: only with --transport http")
    if args.transport == "stdio" and args.port is not None:
        parser.error("--port: only with --transport http, sse or ws")
    if args.extra_tools < 0 or args.page_size < 0:
        parser.error("--extra-tools and --page-size must not be negative")
    port = 0 if args.port is None else args.port
    if not 0 <= port <= 65535:
        parser.error("--port must be between 0 and 65535")

    # Before the SDK can configure logging: stderr only, WARNING and up.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    server = build_server(args.name, extra_tools=args.extra_tools, page_size=args.page_size)
    logging.getLogger().setLevel(logging.WARNING)
    # Until uvicorn or the stdio loop install their own handlers: a SIGTERM right after the
    # line below must end us with status 0 too, not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: _exit_now(args.name, received))
    sys.stderr.write(f"upstream {args.name} started\n")
    sys.stderr.flush()

    if args.transport == "http":
        anyio.run(
            lambda: _serve_http(
                server,
                era=args.era,
                port=port,
                json_response=bool(args.json_response),
                stateless=bool(args.stateless),
            )
        )
    elif args.transport == "sse":
        anyio.run(lambda: _serve_sse(server, era=args.era, port=port))
    elif args.transport == "ws":
        anyio.run(lambda: _serve_ws(server, era=args.era, port=port))
    else:
        anyio.run(lambda: _serve_stdio(server, era=args.era))
    return 0


if __name__ == "__main__":
    sys.exit(main())
