"""A minimal MCP server over Streamable HTTP, for benchmarks: raw ASGI on uvicorn, JSON answers only.

It costs as little as an MCP server can, so a benchmark through it measures the gateway's
overhead rather than an SDK's. It speaks both eras on ``/mcp``:

- 2026-07-28 (stateless): a request whose ``params._meta`` carries the protocol version;
  ``MCP-Protocol-Version`` and ``Mcp-Method`` must agree with the body.
- handshake (2025-11-25): ``initialize`` opens a session (``Mcp-Session-Id``); every later
  request must carry it. ``DELETE`` ends it.

``--handshake-only`` answers ``server/discover`` (and any sessionless request) the way a
handshake-era server does, HTTP 400 with -32600, so a client falls back to ``initialize``.
``--tools N`` lists ``echo0``..``echo<N-1>`` instead of the one ``echo``; each echoes ``text``.
``--sse`` answers every successful request as a one-event SSE stream (``text/event-stream``)
instead of a JSON body, as SDK servers do by default.
``--stdio`` speaks newline-delimited JSON-RPC on stdin/stdout instead of HTTP (one client;
both eras: ``_meta`` in params means 2026-07-28, otherwise ``initialize`` first).

Run: ``python bench/lean_upstream.py [--port 0] [--tools N] [--handshake-only] [--sse | --stdio]``.
Over HTTP it prints ``READY <port>`` on stdout once it accepts connections; SIGTERM or SIGINT
stop it. Over stdio it prints nothing but answers, and stops at the end of stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import sys
from typing import Any

import orjson
import uvicorn
import uvloop

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
META_VERSION = "io.modelcontextprotocol/protocolVersion"
SERVER_INFO = {"name": "lean-upstream", "version": "1.0.0"}
MAX_BODY = 4 * 1024 * 1024

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PARSE_ERROR = -32700
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _tool(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": "Echo the text back.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }


class LeanServer:
    """The ASGI app. One process, one event loop: no locking needed."""

    def __init__(self, tool_names: list[str], *, handshake_only: bool, sse: bool = False) -> None:
        self.handshake_only = handshake_only
        self.sse = sse
        self.tool_names = frozenset(tool_names)
        tools = [_tool(n) for n in tool_names]
        self.list_modern = {"tools": tools, "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}
        self.list_handshake = {"tools": tools}
        self.sessions: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/mcp":
            await _send(send, 404, {"error": "not found; use /mcp"})
            return
        session_id = version_header = method_header = None
        for key, value in scope["headers"]:
            if key == b"mcp-session-id":
                session_id = value.decode("latin-1")
            elif key == b"mcp-protocol-version":
                version_header = value.decode("latin-1")
            elif key == b"mcp-method":
                method_header = value.decode("latin-1")
        verb = scope["method"]
        if verb == "DELETE":
            if session_id is not None and session_id in self.sessions:
                self.sessions.discard(session_id)
                await _send(send, 200, None)
            else:
                await _send(send, 404, _error(None, INVALID_REQUEST, "Session not found"))
            return
        if verb != "POST":
            await _send(send, 405, None, [(b"allow", b"POST, DELETE")])
            return
        body = await _read_body(receive)
        if body is None:
            await _send(send, 413, _error(None, INVALID_REQUEST, "Request body too large"))
            return
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _send(send, 400, _error(None, PARSE_ERROR, "Parse error"))
            return
        if not isinstance(msg, dict):
            await _send(send, 400, _error(None, INVALID_REQUEST, "Invalid Request: batches are not supported"))
            return
        method = msg.get("method")
        if "id" not in msg or not isinstance(method, str):
            await _send(send, 202, None)  # a notification or a response: nothing to answer
            return
        msg_id = msg["id"]
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            await _send(send, 400, _error(msg_id, INVALID_PARAMS, "params must be an object"))
            return
        params = params or {}
        meta = params.get("_meta")
        if not self.handshake_only and session_id is None and isinstance(meta, dict) and META_VERSION in meta:
            await self._modern(send, msg_id, method, params, meta, version_header, method_header)
        else:
            await self._handshake(send, msg_id, method, params, session_id)

    async def _modern(
        self,
        send: Any,
        msg_id: Any,
        method: str,
        params: dict[str, Any],
        meta: dict[str, Any],
        version_header: str | None,
        method_header: str | None,
    ) -> None:
        version = meta[META_VERSION]
        if version_header != version:
            problem = "MCP-Protocol-Version header does not match params._meta's protocol version"
            await _send(send, 400, _error(msg_id, HEADER_MISMATCH, problem))
            return
        if method_header != method:
            problem = "Mcp-Method header does not match the request body's method"
            await _send(send, 400, _error(msg_id, HEADER_MISMATCH, problem))
            return
        if version != MODERN:
            data = {"supported": [MODERN], "requested": version}
            await _send(send, 400, _error(msg_id, UNSUPPORTED_VERSION, "Unsupported protocol version", data))
            return
        if method == "server/discover":
            result: dict[str, Any] | None = {
                "supportedVersions": [MODERN],
                "capabilities": {"tools": {}},
                "resultType": "complete",
                "ttlMs": 0,
                "cacheScope": "private",
                "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO},
            }
        else:
            result = self._common(method, params, modern=True)
        if result is None:
            await _send(send, 404, _error(msg_id, METHOD_NOT_FOUND, f"Method not found: {method}"))
        elif "error" in result:
            await _send(send, 400, {"jsonrpc": "2.0", "id": msg_id, "error": result["error"]})
        else:
            await self._result(send, {"jsonrpc": "2.0", "id": msg_id, "result": result})

    async def _result(self, send: Any, answer: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A successful answer: a JSON body, or (``--sse``) a stream of one ``message`` event."""
        if not self.sse:
            await _send(send, 200, answer, extra)
            return
        headers = [*_SSE, *(extra or ())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"event: message\ndata: " + orjson.dumps(answer) + b"\n\n"
        await send({"type": "http.response.body", "body": body})

    async def _handshake(
        self, send: Any, msg_id: Any, method: str, params: dict[str, Any], session_id: str | None
    ) -> None:
        if session_id is None:
            if method != "initialize":
                await _send(send, 400, _error(msg_id, INVALID_REQUEST, "Bad Request: Missing session ID"))
                return
            requested = params.get("protocolVersion")
            version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE
            new_id = secrets.token_hex(16)
            self.sessions.add(new_id)
            init: dict[str, Any] = {
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": SERVER_INFO,
            }
            answer = {"jsonrpc": "2.0", "id": msg_id, "result": init}
            await self._result(send, answer, [(b"mcp-session-id", new_id.encode())])
            return
        if session_id not in self.sessions:
            await _send(send, 404, _error(msg_id, INVALID_REQUEST, "Session not found"))
            return
        if method == "initialize":
            await _send(send, 400, _error(msg_id, INVALID_REQUEST, "Session already initialized"))
            return
        result = self._common(method, params, modern=False)
        if result is None:
            await _send(send, 200, _error(msg_id, METHOD_NOT_FOUND, f"Method not found: {method}"))
        elif "error" in result:
            await _send(send, 200, {"jsonrpc": "2.0", "id": msg_id, "error": result["error"]})
        else:
            await self._result(send, {"jsonrpc": "2.0", "id": msg_id, "result": result})

    def stdio_answer(self, msg: Any, state: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to one message on the stdio wire; None for notifications and responses."""
        if not isinstance(msg, dict):
            return _error(None, INVALID_REQUEST, "Invalid Request: batches are not supported")
        method = msg.get("method")
        if "id" not in msg or not isinstance(method, str):
            return None
        msg_id = msg["id"]
        params = msg.get("params") or {}
        if not isinstance(params, dict):
            return _error(msg_id, INVALID_PARAMS, "params must be an object")
        meta = params.get("_meta")
        if not self.handshake_only and isinstance(meta, dict) and META_VERSION in meta:
            if meta[META_VERSION] != MODERN:
                data = {"supported": [MODERN], "requested": meta[META_VERSION]}
                return _error(msg_id, UNSUPPORTED_VERSION, "Unsupported protocol version", data)
            if method == "server/discover":
                result: dict[str, Any] | None = {
                    "supportedVersions": [MODERN],
                    "capabilities": {"tools": {}},
                    "resultType": "complete",
                    "ttlMs": 0,
                    "cacheScope": "private",
                    "_meta": {"io.modelcontextprotocol/serverInfo": SERVER_INFO},
                }
            else:
                result = self._common(method, params, modern=True)
        elif method == "initialize":
            requested = params.get("protocolVersion")
            state["initialized"] = True
            result = {
                "protocolVersion": requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE,
                "capabilities": {"tools": {}},
                "serverInfo": SERVER_INFO,
            }
        elif not state.get("initialized"):
            return _error(msg_id, INVALID_REQUEST, "Invalid Request: initialize first")
        else:
            result = self._common(method, params, modern=False)
        if result is None:
            return _error(msg_id, METHOD_NOT_FOUND, f"Method not found: {method}")
        if "error" in result:
            return {"jsonrpc": "2.0", "id": msg_id, "error": result["error"]}
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}

    def _common(self, method: str, params: dict[str, Any], *, modern: bool) -> dict[str, Any] | None:
        """The result of a method both eras share; {"error": ...} for bad params; None if unknown."""
        if method == "tools/call":
            name = params.get("name")
            if name not in self.tool_names:
                return {"error": {"code": INVALID_PARAMS, "message": f"Unknown tool: {name!r}"}}
            arguments = params.get("arguments") or {}
            text = arguments.get("text", "") if isinstance(arguments, dict) else ""
            result: dict[str, Any] = {"content": [{"type": "text", "text": str(text)}], "isError": False}
            if modern:
                result["resultType"] = "complete"
            return result
        if method == "tools/list":
            return self.list_modern if modern else self.list_handshake
        if method == "ping":
            return {"resultType": "complete"} if modern else {}
        return None


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


async def _send(send: Any, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = b"" if obj is None else orjson.dumps(obj)
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append(_JSON)
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve_stdio(app: LeanServer) -> None:
    """One client on stdin/stdout, one message per line, answered in order."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_BODY)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    state: dict[str, Any] = {}
    while line := await reader.readline():
        if not line.strip():
            continue
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            answer: dict[str, Any] | None = _error(None, PARSE_ERROR, "Parse error")
        else:
            answer = app.stdio_answer(msg, state)
        if answer is not None:
            writer.write(orjson.dumps(answer) + b"\n")
            await writer.drain()


async def _serve(app: LeanServer, sock: socket.socket) -> None:
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # it failed to start: let its exception out
            return
        await asyncio.sleep(0.005)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--tools", type=int, default=0, help="list N tools echo0..echoN-1 instead of echo")
    parser.add_argument(
        "--handshake-only", action="store_true", help="refuse server/discover: speak the handshake era only"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sse", action="store_true", help="answer requests as SSE streams instead of JSON")
    mode.add_argument("--stdio", action="store_true", help="speak JSON-RPC lines on stdin/stdout instead of HTTP")
    args = parser.parse_args()
    if not 0 <= args.tools <= 100_000:
        parser.error("--tools must be between 0 and 100000")
    names = [f"echo{i}" for i in range(args.tools)] if args.tools else ["echo"]
    app = LeanServer(names, handshake_only=args.handshake_only, sse=args.sse)
    if args.stdio:
        uvloop.run(_serve_stdio(app))
    else:
        uvloop.run(_serve(app, _bind(args.port)))


if __name__ == "__main__":
    main()
