"""The protocol layer: both eras in, one internal `Call` out, and the answer back in the caller's era.

Transport-neutral: an ingress adapter hands over one decoded message with the
transport facts it has (HTTP headers, session id, endpoint), and gets back a
`Reply` to write. Era detection, handshake-era sessions and the stateless-era
ladder live here and only here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from toolway import __version__
from toolway.pipeline.context import Call, Handler
from toolway.protocol import modern
from toolway.protocol.bridge import adapt_result
from toolway.protocol.errors import (
    HeaderMismatch,
    InvalidRequest,
    SessionNotFound,
    SessionRequired,
    ToolwayError,
    UpstreamRpcError,
    modern_status,
    to_error,
)
from toolway.protocol.jsonrpc import Message
from toolway.protocol.versions import (
    H_PROTOCOL_VERSION,
    HANDSHAKE_VERSIONS,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    negotiate_handshake,
)
from toolway.sessions.downstream import SessionTable

log = structlog.get_logger("toolway.protocol")

SERVER_INFO = {"name": "toolway", "version": __version__}
Capabilities = Callable[[str | None], dict[str, Any]]


@dataclass(slots=True)
class Reply:
    status: int
    message: dict[str, Any] | None = None  # None: nothing to send (202)
    session_id: str | None = None


@dataclass(slots=True)
class Inbound:
    """What the transport knows about one message."""

    message: Message
    path: str  # the endpoint, e.g. "/mcp" or "/servers/web/mcp"
    scope: str | None  # server name for a single-server endpoint
    request_id: str
    headers: Mapping[str, str] | None = None  # lowercase HTTP headers; None on other transports
    raw_headers: Iterable[tuple[bytes, bytes]] = ()
    session_id: str | None = None
    transport: str = "streamable-http"


class ProtocolLayer:
    def __init__(self, handler: Handler, sessions: SessionTable, capabilities: Capabilities) -> None:
        self._handler = handler
        self._sessions = sessions
        self._capabilities = capabilities

    async def handle(self, inbound: Inbound) -> Reply:
        if self._is_modern(inbound):
            return await self._modern(inbound)
        return await self._handshake(inbound)

    def end_session(self, session_id: str | None, path: str) -> Reply:
        """Terminate a handshake-era session (HTTP DELETE)."""
        if session_id is None:
            return _failure(None, SessionRequired("Bad Request: Mcp-Session-Id header is required"))
        if not self._sessions.end(session_id, path):
            return _failure(None, SessionNotFound("Session not found"))
        return Reply(200)

    @staticmethod
    def _is_modern(inbound: Inbound) -> bool:
        """A stateless-era envelope in the body, or a non-handshake version header, means 2026-07-28.

        The body decides first, so a request whose header disagrees with its own
        envelope is told so (-32020) rather than treated as sessionless handshake traffic.
        """
        if inbound.session_id is None:
            meta = (inbound.message.params or {}).get("_meta")
            if isinstance(meta, dict) and META_PROTOCOL_VERSION in meta:
                return True
        version = inbound.headers.get(H_PROTOCOL_VERSION) if inbound.headers is not None else None
        return version is not None and version not in HANDSHAKE_VERSIONS

    async def _modern(self, inbound: Inbound) -> Reply:
        msg = inbound.message
        if msg.kind != "request":
            return Reply(202)  # No client-to-server notification means anything on this wire.
        assert msg.method is not None and msg.id is not None
        try:
            duplicated = modern.duplicated_routing_header(inbound.raw_headers)
            if duplicated is not None:
                raise HeaderMismatch(f"{duplicated} header appears more than once")
            envelope = modern.check_request(msg.method, msg.params, inbound.headers)
            if msg.method == "server/discover":
                result = self._discover(inbound.scope)
            else:
                call = Call(
                    method=msg.method,
                    params=msg.params,
                    era="modern",
                    protocol_version=envelope.protocol_version,
                    client_capabilities=envelope.client_capabilities,
                    client_info=envelope.client_info,
                    request_id=inbound.request_id,
                    scope=inbound.scope,
                    transport=inbound.transport,
                )
                result = await self._handler(call)
        except Exception as exc:
            error = _error(exc)
            return Reply(modern_status(error), {"jsonrpc": "2.0", "id": msg.id, "error": error})
        adapt_result(msg.method, result, "modern")
        return Reply(200, {"jsonrpc": "2.0", "id": msg.id, "result": result})

    async def _handshake(self, inbound: Inbound) -> Reply:
        msg = inbound.message
        if inbound.session_id is None:
            if msg.kind == "request" and msg.method == "initialize":
                return self._initialize(inbound)
            return _failure(msg.id, SessionRequired("Bad Request: Mcp-Session-Id header is required"))
        session = self._sessions.get(inbound.session_id, inbound.path)
        if session is None:
            return _failure(msg.id, SessionNotFound("Session not found"))
        if msg.kind == "notification":
            if msg.method == "notifications/initialized":
                session.initialized = True
            return Reply(202)
        if msg.kind == "response":
            return Reply(202)
        assert msg.method is not None and msg.id is not None
        if msg.method == "initialize":
            return _failure(msg.id, InvalidRequest("Invalid Request: this session is already initialized"))
        call = Call(
            method=msg.method,
            params=msg.params,
            era="handshake",
            protocol_version=session.protocol_version,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            request_id=inbound.request_id,
            scope=inbound.scope,
            transport=inbound.transport,
        )
        try:
            result = await self._handler(call)
        except Exception as exc:
            # Inside a live session every error travels as JSON-RPC with HTTP 200:
            # a 404 here would tell the client its session is gone.
            return Reply(200, {"jsonrpc": "2.0", "id": msg.id, "error": _error(exc)})
        adapt_result(msg.method, result, "handshake")
        return Reply(200, {"jsonrpc": "2.0", "id": msg.id, "result": result})

    def _initialize(self, inbound: Inbound) -> Reply:
        params = inbound.message.params or {}
        version = negotiate_handshake(params.get("protocolVersion"))
        capabilities = params.get("capabilities")
        info = params.get("clientInfo")
        session = self._sessions.create(
            inbound.path,
            version,
            capabilities if isinstance(capabilities, dict) else {},
            info if isinstance(info, dict) else None,
        )
        result = {
            "protocolVersion": version,
            "capabilities": self._capabilities(inbound.scope),
            "serverInfo": SERVER_INFO,
        }
        return Reply(200, {"jsonrpc": "2.0", "id": inbound.message.id, "result": result}, session.id)

    def _discover(self, scope: str | None) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self._capabilities(scope),
            "_meta": {META_SERVER_INFO: SERVER_INFO},
        }


def new_request_id(incoming: str | None) -> str:
    """Honour a sane incoming X-Request-Id, else mint one."""
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return secrets.token_hex(8)


def _error(exc: BaseException) -> dict[str, Any]:
    if not isinstance(exc, ToolwayError | UpstreamRpcError):
        log.exception("unexpected error while handling a call", exc_info=exc)
    return to_error(exc)


def _failure(msg_id: Any, exc: ToolwayError) -> Reply:
    return Reply(exc.http_status, {"jsonrpc": "2.0", "id": msg_id, "error": to_error(exc)})
