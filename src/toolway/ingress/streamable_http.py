"""Streamable HTTP ingress on `/mcp` and `/servers/<name>/mcp`, as raw ASGI.

Turns HTTP into messages for the protocol layer and its replies back into HTTP:
Host/Origin checks, a bounded body, one orjson parse, JSON or single-event SSE
answers, 202 for notifications and responses, DELETE to end a session.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from toolway.ingress.asgi import BodyTooLarge, read_body, respond, respond_json, sse_frame
from toolway.ingress.security import HostOriginCheck
from toolway.protocol import jsonrpc
from toolway.protocol.errors import InvalidRequest, ToolwayError, to_error
from toolway.protocol.layer import Inbound, ProtocolLayer, Reply, new_request_id
from toolway.protocol.versions import H_SESSION_ID

_ALLOW = [(b"allow", b"POST, DELETE")]


class StreamableHttpIngress:
    """The ASGI app for the agent-facing port."""

    def __init__(
        self,
        layer: ProtocolLayer,
        *,
        security: HostOriginCheck,
        max_body_bytes: int,
        server_names: Collection[str],
    ) -> None:
        self._layer = layer
        self._security = security
        self._max_body = max_body_bytes
        self._servers = frozenset(server_names)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # Lifespan is handled by the composition root.
        path: str = scope["path"]
        server = self._endpoint(path)
        if server is None:
            await respond_json(send, 404, {"error": f"no MCP endpoint at {path}; use /mcp"})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._security.problem(headers.get("host"), headers.get("origin"))
        if problem is not None:
            status, reason = problem
            await respond_json(send, status, {"error": reason})
            return
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, path, server or None, headers)  # "" means /mcp
        elif method == "DELETE":
            await self._write(send, self._layer.end_session(headers.get(H_SESSION_ID), path), headers)
        else:
            # No server-initiated stream on this endpoint yet: the spec's answer is 405.
            await respond(send, 405, headers=_ALLOW)

    def _endpoint(self, path: str) -> str | None:
        """'' for /mcp, the server name for /servers/<name>/mcp, None for anything else."""
        if path == "/mcp":
            return ""
        if path.startswith("/servers/") and path.endswith("/mcp"):
            name = path[len("/servers/") : -len("/mcp")]
            if name in self._servers:
                return name
        return None

    async def _post(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        path: str,
        server: str | None,
        headers: dict[str, str],
    ) -> None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            await self._too_large(send)
            return
        ctype = headers.get("content-type", "")
        if not ctype.split(";")[0].strip().lower() == "application/json":
            await self._reject(
                send, 415, InvalidRequest("Unsupported Media Type: Content-Type must be application/json")
            )
            return
        accept = headers.get("accept", "*/*")
        if not any(t in accept for t in ("application/json", "text/event-stream", "*/*")):
            await self._reject(
                send, 406, InvalidRequest("Not Acceptable: Accept must allow application/json")
            )
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
            await self._write(
                send,
                Reply(exc.http_status, {"jsonrpc": "2.0", "id": msg_id, "error": to_error(exc)}),
                headers,
            )
            return
        inbound = Inbound(
            message=message,
            path=path,
            scope=server,
            request_id=new_request_id(headers.get("x-request-id")),
            headers=headers,
            raw_headers=scope["headers"],
            session_id=headers.get(H_SESSION_ID),
        )
        reply = await self._layer.handle(inbound)
        await self._write(send, reply, headers, inbound.request_id)

    async def _write(
        self, send: Any, reply: Reply, headers: dict[str, str], request_id: str | None = None
    ) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if reply.session_id is not None:
            extra.append((b"mcp-session-id", reply.session_id.encode()))
        if request_id is not None:
            extra.append((b"x-request-id", request_id.encode()))
        if reply.message is None:
            await respond(send, reply.status, headers=extra)
            return
        body = orjson.dumps(reply.message)
        accept = headers.get("accept", "*/*")
        if "text/event-stream" in accept and "application/json" not in accept and "*/*" not in accept:
            extra.append((b"cache-control", b"no-cache"))
            await respond(
                send, reply.status, sse_frame(body), content_type=b"text/event-stream", headers=extra
            )
            return
        await respond(send, reply.status, body, headers=extra)

    async def _too_large(self, send: Any) -> None:
        exc = InvalidRequest(f"Request body exceeds the gateway's limit of {self._max_body} bytes")
        await self._reject(send, 413, exc)

    async def _reject(self, send: Any, status: int, exc: ToolwayError) -> None:
        await respond_json(send, status, {"jsonrpc": "2.0", "id": None, "error": to_error(exc)})
