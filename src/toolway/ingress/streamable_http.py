"""Streamable HTTP ingress on `/mcp` and `/servers/<name>/mcp`, as raw ASGI.

Turns HTTP into messages for the protocol layer and its event streams back into
HTTP: Host/Origin checks, a bounded body, one orjson parse. An answer goes out as
plain JSON when nothing had to be sent before it, and as SSE otherwise (progress,
log messages, server requests), with event ids, a priming event, `retry` and
keep-alive comments. GET opens a handshake-era session's own stream, or resumes a
lost one from `Last-Event-ID`; DELETE ends the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

import structlog

from toolway.auth.identity import Identity
from toolway.ingress.asgi import BodyTooLarge, read_body, respond, respond_json
from toolway.ingress.authn import IngressAuth
from toolway.ingress.legacy_sse import LegacySseIngress
from toolway.ingress.security import HostOriginCheck
from toolway.ingress.websocket import WebSocketIngress
from toolway.protocol import jsonrpc
from toolway.protocol.errors import AuthenticationFailed, InvalidRequest, ToolwayError, to_error
from toolway.protocol.layer import Inbound, ProtocolLayer, new_request_id
from toolway.protocol.versions import H_SESSION_ID
from toolway.registry.discovery import Discovery
from toolway.sessions.streams import EventStream, parse_event_id

log = structlog.get_logger("toolway.ingress")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_KEEPALIVE = b": keep-alive\n\n"
_ENDPOINTS = frozenset({"mcp", "sse", "messages", "ws"})


class StreamableHttpIngress:
    """The ASGI app for the agent-facing port."""

    discovery: Discovery | None = None  # set by the composition root: `GET /v0.1/servers…`

    def __init__(
        self,
        layer: ProtocolLayer,
        *,
        security: HostOriginCheck,
        max_body_bytes: int,
        server_names: Collection[str],
        spawn: Spawn,
        keepalive_seconds: float = 15.0,
        retry_ms: int = 1000,
        max_queued: int = 1024,
        auth: IngressAuth | None = None,
    ) -> None:
        self._layer = layer
        self._auth = auth  # None: the gateway runs without authentication
        self._security = security
        self._max_body = max_body_bytes
        self._servers = server_names  # a live view: servers are added and removed at run time
        self._spawn = spawn
        self._keepalive = keepalive_seconds
        self._retry_ms = retry_ms
        self._max_queued = max_queued
        self.legacy = LegacySseIngress(
            layer,
            spawn,
            max_message_bytes=max_body_bytes,
            keepalive_seconds=keepalive_seconds,
            max_queued=max_queued,
        )
        self.websocket = WebSocketIngress(layer, spawn, max_message_bytes=max_body_bytes, max_queued=max_queued)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return  # Lifespan is handled by the composition root.
        path: str = scope["path"]
        if kind == "http" and self._auth is not None and self._auth.is_metadata(path):
            await self._auth.metadata(path, scope["method"], send, lambda p: self._route(p) is not None)
            return
        route = self._route(path)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._security.problem(headers.get("host"), headers.get("origin"))
        if kind == "websocket":
            if route is None or route[0] != "ws" or problem is not None:
                await send({"type": "websocket.close", "code": 1008, "reason": problem[1] if problem else "not found"})
                return
            ok, identity = await self._identify(scope, headers, path, receive, send, websocket=True)
            if ok:
                await self.websocket(scope, receive, send, route[1], route[2], identity)
            return
        if route is None and self.discovery is not None and self.discovery.handles(path):
            if problem is not None:
                await respond_json(send, problem[0], {"error": problem[1]})
                return
            # Agents discover servers here (docs/registry.md), authenticated like any other request:
            # each sees only the servers its team and scopes let it use.
            ok, identity = await self._identify(scope, headers, path, receive, send, websocket=False)
            if ok:
                await self.discovery(scope, receive, send, identity, agent=True)
            return
        if route is None:
            await respond_json(send, 404, {"error": f"no MCP endpoint at {path}; use /mcp"})
            return
        if problem is not None:
            status, reason = problem
            await respond_json(send, status, {"error": reason})
            return
        # Every request is authenticated, before any session is looked up.
        ok, who = await self._identify(scope, headers, path, receive, send, websocket=False)
        if not ok:
            return
        endpoint, prefix, server = route
        method = scope["method"]
        if endpoint != "mcp":
            await self._other(endpoint, method, scope, receive, send, prefix, server, who)
            return
        if method == "POST":
            await self._post(scope, receive, send, path, server, headers, who)
        elif method == "GET":
            await self._get(receive, send, path, headers, who)
        elif method == "DELETE":
            try:
                self._layer.end_session(headers.get(H_SESSION_ID), path, who)
            except ToolwayError as exc:
                await self._reject(send, exc.http_status, exc)
                return
            await respond(send, 200)
        else:
            await respond(send, 405, headers=[(b"allow", b"GET, POST, DELETE")])

    async def _identify(
        self, scope: dict[str, Any], headers: dict[str, str], path: str, receive: Any, send: Any, *, websocket: bool
    ) -> tuple[bool, Identity | None]:
        """(False, None) once the caller has been refused; else (True, its identity, None without auth)."""
        if self._auth is None:
            return True, None
        try:
            return True, await self._auth.identify(scope, headers, path)
        except AuthenticationFailed as exc:
            log.info("authentication failed", path=path, client=_peer(scope), reason=exc.message)
            if websocket:
                await self._auth.reject_websocket(receive, send, exc, path)
            else:
                await self._auth.reject(send, exc, path)
            return False, None

    def _route(self, path: str) -> tuple[str, str, str | None] | None:
        """(endpoint, path prefix, server) for `/mcp`, `/sse`, `/messages`, `/ws` and their
        `/servers/<name>/…` forms; None for anything else."""
        prefix, server = "", None
        if path.startswith("/servers/"):
            name, _, rest = path[len("/servers/") :].partition("/")
            if name not in self._servers:
                return None
            prefix, server, path = f"/servers/{name}", name, "/" + rest
        endpoint = path[1:]
        if endpoint not in _ENDPOINTS:
            return None
        return endpoint, prefix, server

    async def _other(
        self,
        endpoint: str,
        method: str,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        prefix: str,
        server: str | None,
        identity: Identity | None,
    ) -> None:
        if endpoint == "sse" and method == "GET":
            await self.legacy.open(receive, send, prefix, server, _peer(scope), identity)
        elif endpoint == "messages" and method == "POST":
            await self.legacy.post(scope, receive, send, identity)
        elif endpoint == "ws":
            await respond_json(send, 426, {"error": "WebSocket upgrade required"}, headers=[(b"upgrade", b"websocket")])
        else:
            allow = b"GET" if endpoint == "sse" else b"POST"
            await respond(send, 405, headers=[(b"allow", allow)])

    async def _post(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        path: str,
        server: str | None,
        headers: dict[str, str],
        identity: Identity | None,
    ) -> None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            await self._too_large(send)
            return
        ctype = headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            exc = InvalidRequest("Unsupported Media Type: Content-Type must be application/json")
            await self._reject(send, 415, exc)
            return
        accept = headers.get("accept", "*/*")
        if not any(t in accept for t in ("application/json", "text/event-stream", "*/*")):
            await self._reject(send, 406, InvalidRequest("Not Acceptable: Accept must allow application/json"))
            return
        try:
            body = await read_body(receive, self._max_body)
        except BodyTooLarge:
            await self._too_large(send)
            return
        except ConnectionResetError:
            return
        try:
            message = jsonrpc.decode(body)
        except ToolwayError as exc:
            msg_id = jsonrpc.request_id_of(body) if isinstance(exc, InvalidRequest) else None
            await respond_json(send, exc.http_status, {"jsonrpc": "2.0", "id": msg_id, "error": to_error(exc)})
            return
        inbound = Inbound(
            message=message,
            path=path,
            scope=server,
            request_id=new_request_id(headers.get("x-request-id"), headers.get("traceparent")),
            headers=headers,
            raw_headers=scope["headers"],
            session_id=headers.get(H_SESSION_ID),
            client=_peer(scope),
            identity=identity,
        )
        stream = EventStream(with_ids=False, history=self._max_queued)
        # Owned by the gateway's task group: a stateless-era call parked for more
        # input outlives this HTTP exchange.
        self._spawn(self._layer.handle(inbound, stream))
        # In the stateless era a closed response stream is the cancellation; in the
        # handshake era a disconnect is not (the client may resume).
        cancel = message.kind == "request" and self._layer.is_modern(inbound)
        sse_only = "text/event-stream" in accept and "application/json" not in accept and "*/*" not in accept
        extra = [(b"x-request-id", inbound.request_id.encode())]
        await self._serve(
            stream, 0, receive, send, extra, cancel_on_disconnect=cancel, plain=not sse_only, endpoint=path
        )

    async def _get(
        self, receive: Any, send: Any, path: str, headers: dict[str, str], identity: Identity | None
    ) -> None:
        try:
            session = self._layer.session(headers.get(H_SESSION_ID), path, identity)
        except ToolwayError as exc:
            await self._reject(send, exc.http_status, exc)
            return
        if "text/event-stream" not in headers.get("accept", "text/event-stream"):
            await self._reject(send, 406, InvalidRequest("Not Acceptable: GET needs Accept: text/event-stream"))
            return
        stream, position = session.standalone, session.standalone.seq
        resume = parse_event_id(headers.get("last-event-id", ""))
        if resume is not None:
            found = session.stream(resume[0])
            if found is not None:
                stream, position = found, resume[1]
        await self._serve(stream, position, receive, send, [], cancel_on_disconnect=False, plain=False)

    async def _serve(
        self,
        stream: EventStream,
        position: int,
        receive: Any,
        send: Any,
        extra: list[tuple[bytes, bytes]],
        *,
        cancel_on_disconnect: bool,
        plain: bool,
        endpoint: str | None = None,
    ) -> None:
        """Copy a stream to the HTTP response until it closes or the client goes away."""
        stream.reader += 1
        me = stream.reader
        watcher: asyncio.Task[Any] | None = None
        started = False
        try:
            while True:
                if stream.closed and not started and plain and stream.seq <= 1:
                    await self._plain(stream, send, extra, endpoint)
                    return
                frames, position, lost = stream.after(position)
                if lost and started:
                    # The client reads slower than the stream fills: its bounded history has
                    # dropped events it never saw. End the response; it may resume or retry.
                    log.warning("ending a stream whose client fell behind", stream=stream.id)
                    break
                if frames or (not plain and not started):
                    if not started:
                        started = True
                        await self._start_sse(stream, send, extra)
                        watcher = watcher or self._watch(receive, stream)
                    await send({"type": "http.response.body", "body": b"".join(frames), "more_body": True})
                if stream.closed or stream.reader != me:
                    break
                if watcher is None and cancel_on_disconnect:
                    watcher = self._watch(receive, stream)
                if watcher is not None and watcher.done():
                    if cancel_on_disconnect and stream.owner is not None and not stream.closed:
                        stream.owner.cancel()
                    return
                if not await stream.wait(self._keepalive):
                    if not started:
                        started = True
                        await self._start_sse(stream, send, extra)
                        watcher = watcher or self._watch(receive, stream)
                    await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()

    def _watch(self, receive: Any, stream: EventStream) -> asyncio.Task[Any]:
        """A task that ends when the client disconnects, waking the stream's reader."""

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        task = asyncio.ensure_future(until_disconnect())
        task.add_done_callback(lambda _: stream.wake())
        return task

    async def _plain(
        self, stream: EventStream, send: Any, extra: list[tuple[bytes, bytes]], endpoint: str | None = None
    ) -> None:
        headers = list(extra)
        if stream.session_id is not None:
            headers.append((b"mcp-session-id", stream.session_id.encode()))
        body = stream.only_body()
        if stream.status == 403 and self._auth is not None and endpoint is not None:
            headers += self._auth.insufficient_scope(endpoint, body)  # RFC 6750 §3.1: the client may step up
        await respond(
            send,
            202 if body is None and stream.status == 200 else stream.status,
            body or b"",
            headers=headers,
        )

    async def _start_sse(self, stream: EventStream, send: Any, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [*_SSE_HEADERS, *extra]
        if stream.session_id is not None:
            headers.append((b"mcp-session-id", stream.session_id.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        priming = stream.priming(self._retry_ms)
        if priming:
            await send({"type": "http.response.body", "body": priming, "more_body": True})

    async def _too_large(self, send: Any) -> None:
        exc = InvalidRequest(f"Request body exceeds the gateway's limit of {self._max_body} bytes")
        await self._reject(send, 413, exc)

    async def _reject(self, send: Any, status: int, exc: ToolwayError) -> None:
        await respond_json(send, status, {"jsonrpc": "2.0", "id": None, "error": to_error(exc)})


def _peer(scope: dict[str, Any]) -> str | None:
    """The client's `host:port`, as the ASGI server saw it."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
