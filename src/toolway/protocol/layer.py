"""The protocol layer: both eras in, one internal `Call` out, and the answer back in the caller's era.

Transport-neutral: an ingress adapter hands over one decoded message with the
transport facts it has (HTTP headers, session id, endpoint) and an `EventStream`;
the layer writes everything the client must receive into that stream — early
messages, then the final response — and closes it. Era detection, handshake-era
sessions, the stateless-era ladder and the bridge between eras live here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from toolway import __version__
from toolway.auth.identity import Identity, session_principal
from toolway.pipeline.context import Call, Handler
from toolway.protocol import modern
from toolway.protocol.bridge import adapt_result
from toolway.protocol.errors import (
    HeaderMismatch,
    InvalidParams,
    InvalidRequest,
    SessionGone,
    SessionNotFound,
    SessionRequired,
    ToolwayError,
    UpstreamRpcError,
    modern_status,
    to_error,
)
from toolway.protocol.jsonrpc import Message, RequestId
from toolway.protocol.logging_levels import valid as valid_level
from toolway.protocol.mrtr import STATE_PREFIX, BridgeSink, Exchange, Parking
from toolway.protocol.sinks import HandshakeSink
from toolway.protocol.versions import (
    H_PROTOCOL_VERSION,
    HANDSHAKE_VERSIONS,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    negotiate_handshake,
)
from toolway.sessions.downstream import DownstreamSession, SessionTable
from toolway.sessions.hub import LIST_CHANGED, Hub, Listener
from toolway.sessions.owner import tag_foreign, untag_foreign
from toolway.sessions.streams import EventStream

log = structlog.get_logger("toolway.protocol")

SERVER_INFO = {"name": "toolway", "version": __version__}
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
_MAX_BRIDGE_ROUNDS = 16
Capabilities = Callable[[str | None], dict[str, Any]]


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
    client: str | None = None  # the peer's host:port (or "stdio"), for the audit log
    identity: Identity | None = None  # authenticated by the ingress; None: the gateway runs without auth


class ProtocolLayer:
    def __init__(
        self,
        handler: Handler,
        sessions: SessionTable,
        capabilities: Capabilities,
        hub: Hub,
        parking: Parking,
        *,
        subscribe_upstream: Callable[[str, bool], Awaitable[None]],
        on_log_level: Callable[[], None] = lambda: None,
        max_streams_per_session: int = 64,
    ) -> None:
        self._handler = handler
        self._sessions = sessions
        self._capabilities = capabilities
        self._hub = hub
        self._parking = parking
        self._on_log_level = on_log_level
        self._subscribe_upstream = subscribe_upstream
        self._max_streams = max_streams_per_session
        self.closing = asyncio.Event()  # set at shutdown: long-lived listen streams end

    def is_modern(self, inbound: Inbound) -> bool:
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

    async def handle(self, inbound: Inbound, stream: EventStream) -> None:
        """Answer one message into `stream`, and close it (unless a parked call will)."""
        stream.owner = asyncio.current_task()
        try:
            if self.is_modern(inbound):
                await self._modern(inbound, stream)
            else:
                await self._handshake(inbound, stream)
        except asyncio.CancelledError:
            stream.close()
            raise
        except Exception as exc:  # A bug must still answer the client.
            _fail(stream, inbound.message.id, _error(exc), 200)

    def session(self, session_id: str | None, path: str, identity: Identity | None = None) -> DownstreamSession:
        """The live session for a GET or DELETE, if `identity` is the one that opened it.

        Raises:
            SessionRequired, SessionNotFound.
        """
        if session_id is None:
            raise SessionRequired("Bad Request: Mcp-Session-Id header is required")
        session = self._sessions.get(session_id, path, session_principal(identity))
        if session is None:
            raise SessionNotFound("Session not found")
        return session

    def end_session(self, session_id: str | None, path: str, identity: Identity | None = None) -> None:
        """Terminate a handshake-era session (HTTP DELETE). Raises as `session`."""
        self.session(session_id, path, identity)
        self._sessions.end(session_id or "", path, session_principal(identity))

    # --- 2026-07-28 --------------------------------------------------------------------------

    async def _modern(self, inbound: Inbound, stream: EventStream) -> None:
        msg = inbound.message
        if msg.kind != "request":
            stream.status = 202  # No client-to-server notification means anything on this wire.
            stream.close()
            return
        assert msg.method is not None and msg.id is not None
        try:
            duplicated = modern.duplicated_routing_header(inbound.raw_headers)
            if duplicated is not None:
                raise HeaderMismatch(f"{duplicated} header appears more than once")
            envelope = modern.check_request(msg.method, msg.params, inbound.headers)
        except ToolwayError as exc:
            error = to_error(exc)
            _fail(stream, msg.id, error, modern_status(error))
            return
        params = msg.params or {}
        if msg.method == "server/discover":
            _answer(stream, msg.id, adapt_result(msg.method, self._discover(inbound.scope), "modern"))
            return
        if msg.method == "subscriptions/listen":
            await self._listen(msg.id, params, stream, inbound.scope)
            return
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            foreign = untag_foreign(state[len(STATE_PREFIX) :])
            if foreign is None:
                self._resume(msg, params, state, stream, session_principal(inbound.identity))
                return
            params = msg.params = {**params, "requestState": foreign}  # an upstream's, tagged by `_tag_state`
        exchange = Exchange(stream, msg.id)
        sink = BridgeSink(exchange, envelope.client_capabilities, self._parking)
        sink.task = asyncio.current_task()
        sink.principal = session_principal(inbound.identity)
        meta_level = params["_meta"].get(META_LOG_LEVEL)
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
            sink=sink,
            log_level=meta_level if valid_level(meta_level) else None,
            traceparent=inbound.headers.get("traceparent") if inbound.headers is not None else None,
            client=inbound.client,
            identity=inbound.identity,
            principal=inbound.identity.subject if inbound.identity is not None else None,
            headers=inbound.headers,
        )
        try:
            result = await self._handler(call)
        except Exception as exc:
            error = _error(exc)
            # The exchange may be a retry's by now: answer on it, with its id.
            _fail(sink.exchange.stream, sink.exchange.msg_id, error, modern_status(error))
            return
        _answer(sink.exchange.stream, sink.exchange.msg_id, adapt_result(msg.method, _tag_state(result), "modern"))

    def _resume(
        self, msg: Message, params: dict[str, Any], state: str, stream: EventStream, principal: str | None
    ) -> None:
        """A retry of a parked call (by the principal that made it): hand it the answers and this exchange."""
        assert msg.id is not None
        try:
            sink = self._parking.take(state, principal)
        except InvalidParams as exc:
            error = to_error(exc)
            _fail(stream, msg.id, error, modern_status(error))
            return
        responses = params.get("inputResponses")
        sink.resume(Exchange(stream, msg.id), responses if isinstance(responses, dict) else {})

    async def _listen(self, msg_id: RequestId, params: dict[str, Any], stream: EventStream, scope: str | None) -> None:
        """`subscriptions/listen`: a stream of session-level notifications until the client hangs up."""
        raw = params.get("notifications")
        wanted: dict[str, Any] = raw if isinstance(raw, dict) else {}
        flags = {
            "notifications/tools/list_changed": "toolsListChanged",
            "notifications/prompts/list_changed": "promptsListChanged",
            "notifications/resources/list_changed": "resourcesListChanged",
        }
        methods = frozenset(m for m in LIST_CHANGED if wanted.get(flags[m]) is True)
        uris = [u for u in wanted.get("resourceSubscriptions") or [] if isinstance(u, str)]
        listener_id = f"listen-{secrets.token_hex(8)}"
        self._hub.add(Listener(listener_id, stream, methods, subscription_id=msg_id, scope=scope))
        for uri in uris:
            if self._hub.subscribe(listener_id, uri):
                await self._subscribe_upstream(uri, True)
        honoured: dict[str, Any] = {flags[m]: True for m in sorted(methods)}
        if uris:
            honoured["resourceSubscriptions"] = uris
        stream.push(
            {
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {"notifications": honoured, "_meta": {META_SUBSCRIPTION_ID: msg_id}},
            }
        )
        try:
            await self.closing.wait()
            result = {"resultType": "complete", "_meta": {META_SUBSCRIPTION_ID: msg_id}}
            _answer(stream, msg_id, result)
        finally:
            for uri in self._hub.remove(listener_id):
                with contextlib.suppress(Exception):
                    await self._subscribe_upstream(uri, False)

    # --- handshake era -----------------------------------------------------------------------

    async def _handshake(self, inbound: Inbound, stream: EventStream) -> None:
        msg = inbound.message
        if inbound.session_id is None:
            if msg.kind == "request" and msg.method == "initialize":
                self._initialize(inbound, stream)
            else:
                exc = SessionRequired("Bad Request: Mcp-Session-Id header is required")
                _fail(stream, msg.id, to_error(exc), exc.http_status)
            return
        # Bound to its creator: another principal presenting the id is told it does not exist.
        session = self._sessions.get(inbound.session_id, inbound.path, session_principal(inbound.identity))
        if session is None:
            exc2 = SessionNotFound("Session not found")
            _fail(stream, msg.id, to_error(exc2), exc2.http_status)
            return
        stream.session_id = None
        if msg.kind != "request":
            self._client_message(session, msg)
            stream.status = 202
            stream.close()
            return
        assert msg.method is not None and msg.id is not None
        if msg.method == "initialize":
            _fail(stream, msg.id, to_error(InvalidRequest("Invalid Request: already initialized")), 200)
            return
        if len(session.inflight) >= self._max_streams:
            exc3 = InvalidRequest(f"this session already has {self._max_streams} requests in flight; wait for some")
            _fail(stream, msg.id, to_error(exc3), 200)
            return
        stream.with_ids = True
        session.remember(stream)
        session.inflight[msg.id] = asyncio.current_task()  # type: ignore[assignment]
        try:
            result = await self._session_request(session, inbound, stream)
        except asyncio.CancelledError:
            raise
        except SessionGone as exc:
            # The upstream state this session relied on is lost (docs/routing.md, affinity):
            # end the session, and the 404 tells the client to start a new one.
            session.inflight.pop(msg.id, None)
            _fail(stream, msg.id, _error(exc), exc.http_status)  # before the session's streams close
            self._sessions.end(session.id, inbound.path)
            return
        except Exception as exc:
            # Inside a live session every error travels as JSON-RPC with HTTP 200:
            # a 404 here would tell the client its session is gone.
            _fail(stream, msg.id, _error(exc), 200)
            return
        finally:
            session.inflight.pop(msg.id, None)
        _answer(stream, msg.id, adapt_result(msg.method, result, "handshake"))

    async def _session_request(
        self, session: DownstreamSession, inbound: Inbound, stream: EventStream
    ) -> dict[str, Any]:
        msg = inbound.message
        assert msg.method is not None
        params = msg.params or {}
        if msg.method == "logging/setLevel":
            level = params.get("level")
            if not valid_level(level):
                raise InvalidParams(f"Invalid log level: {level!r}")
            session.log_level = level
            listener = self._hub.get(session.id)
            if listener is not None:
                listener.log_level = level
            self._on_log_level()
            return {}
        sink = HandshakeSink(session, stream, self._hub)
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
            sink=sink,
            log_level=session.log_level or "debug",
            traceparent=inbound.headers.get("traceparent") if inbound.headers is not None else None,
            subscriber=session.id,
            client=inbound.client,
            identity=inbound.identity,
            principal=inbound.identity.subject if inbound.identity is not None else None,
            headers=inbound.headers,
        )
        result = await self._handler(call)
        # A stateless-era server asked for input: ask the client the old way, then retry.
        for _ in range(_MAX_BRIDGE_ROUNDS):
            if result.get("resultType") != "input_required":
                return result
            raw = result.get("inputRequests")
            requests: dict[str, Any] = raw if isinstance(raw, dict) else {}
            responses = {}
            for key, question in requests.items():
                if isinstance(question, dict) and isinstance(question.get("method"), str):
                    responses[key] = await sink.request(question["method"], question.get("params"))
            retry = {**params, "inputResponses": responses}
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            call.params = retry
            result = await self._handler(call)
        raise InvalidRequest(f"the server asked for input more than {_MAX_BRIDGE_ROUNDS} times")

    def _client_message(self, session: DownstreamSession, msg: Message) -> None:
        """A notification, or the client's answer to a request we relayed."""
        if msg.kind == "response":
            future = session.pending.get(msg.id)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(msg.raw)
            return
        if msg.method == "notifications/initialized":
            session.initialized = True
            if self._hub.get(session.id) is None:
                level = session.log_level or "debug"
                self._hub.add(Listener(session.id, session.standalone, log_level=level, scope=session.scope))
        elif msg.method == "notifications/cancelled":
            request_id = (msg.params or {}).get("requestId")
            task = session.inflight.get(request_id)
            if task is not None:
                task.cancel()

    def _initialize(self, inbound: Inbound, stream: EventStream) -> None:
        params = inbound.message.params or {}
        version = negotiate_handshake(params.get("protocolVersion"))
        capabilities = params.get("capabilities")
        info = params.get("clientInfo")
        session = self._sessions.create(
            inbound.path,
            version,
            capabilities if isinstance(capabilities, dict) else {},
            info if isinstance(info, dict) else None,
            inbound.scope,
            principal=session_principal(inbound.identity),
        )
        # Listening starts now, not at notifications/initialized: some clients never send it.
        self._hub.add(Listener(session.id, session.standalone, log_level="debug", scope=inbound.scope))
        result = {
            "protocolVersion": version,
            "capabilities": self._capabilities(inbound.scope),
            "serverInfo": SERVER_INFO,
        }
        stream.session_id = session.id
        assert inbound.message.id is not None
        _answer(stream, inbound.message.id, result)

    def _discover(self, scope: str | None) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self._capabilities(scope),
            "_meta": {META_SERVER_INFO: SERVER_INFO},
        }


def new_request_id(incoming: str | None, traceparent: str | None = None) -> str:
    """The call's correlation id: a sane incoming X-Request-Id, else the trace id of a valid
    W3C `traceparent` (so logs and the caller's trace share one id), else a new one."""
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.strip())
        if match and match[1] != "ff" and match[2] != _ZERO_TRACE and match[3] != _ZERO_SPAN:
            return match[2]
    return secrets.token_hex(8)


# version-traceid-parentid-flags; a later version may append fields after a dash.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?:-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _tag_state(result: dict[str, Any]) -> dict[str, Any]:
    """In a worker of `toolway serve --workers N`, an upstream's `requestState` comes back tagged,
    so the retry reaches this worker (and its copy of a stdio upstream); unchanged otherwise."""
    state = result.get("requestState")
    if not isinstance(state, str) or result.get("resultType") != "input_required":
        return result
    tagged = tag_foreign(state)
    return result if tagged is None else {**result, "requestState": STATE_PREFIX + tagged}


def _answer(stream: EventStream, msg_id: RequestId, result: dict[str, Any]) -> None:
    stream.push({"jsonrpc": "2.0", "id": msg_id, "result": result})
    stream.close()


def _fail(stream: EventStream, msg_id: RequestId | None, error: dict[str, Any], status: int) -> None:
    if stream.empty:
        stream.status = status
    stream.push({"jsonrpc": "2.0", "id": msg_id, "error": error})
    stream.close()


def _error(exc: BaseException) -> dict[str, Any]:
    if not isinstance(exc, ToolwayError | UpstreamRpcError):
        log.exception("unexpected error while handling a call", exc_info=exc)
    return to_error(exc)
