"""One MCP session with one upstream server, in whichever era it speaks.

`connect` probes `server/discover` (2026-07-28) and falls back to the
`initialize` handshake, the way the official SDK clients negotiate. `request`
then dresses each call for that era: `_meta` envelope and routing headers for a
stateless-era server, the session for a handshake-era one.

Messages the server sends while a call runs are taken apart here: progress goes
back to the caller under the caller's own token (the gateway mints one per call,
so two clients using the same token never see each other's progress), log
messages go to the caller, server→client requests are relayed to the caller and
its answer is sent back, and session-level notifications (list changes, resource
updates) go to `on_session_message`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from toolway import __version__
from toolway.pipeline.context import Sink
from toolway.protocol.errors import (
    ToolwayError,
    UpstreamHttpStatus,
    UpstreamIncompatible,
    UpstreamProtocolError,
    UpstreamRpcError,
    to_error,
)
from toolway.protocol.logging_levels import admits
from toolway.protocol.modern import encode_header_value
from toolway.protocol.versions import (
    ALL_VERSIONS,
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE,
    LATEST_MODERN,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    NAME_BEARING_METHODS,
    Era,
)
from toolway.upstream.channel import Channel, ChannelClosed
from toolway.upstream.http import UpstreamHttpError

GATEWAY_INFO = {"name": "toolway", "version": __version__}
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
_ENVELOPE_KEYS = (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL)
# What the gateway declares to handshake-era servers: it relays all of these to
# whichever client caused the request, or answers with an error when that client can't.
GATEWAY_CAPABILITIES = {
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
    "roots": {"listChanged": True},
}

Spawn = Callable[[Coroutine[Any, Any, None]], None]
SessionMessage = Callable[[dict[str, Any]], None]


@dataclass
class Negotiated:
    """What the upstream told us about itself when we connected."""

    era: Era
    protocol_version: str
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None


@dataclass(slots=True)
class _InFlight:
    sink: Sink | None
    log_level: str | None


class UpstreamClient:
    """Speaks MCP to one server over one channel.

    Raises (from every method): `ChannelClosed`/`SessionExpired` from the channel,
    `UpstreamRpcError` when the server answers with a JSON-RPC error, and
    `UpstreamProtocolError` when it answers with something that is not MCP.
    """

    def __init__(
        self,
        server: str,
        channel: Channel,
        *,
        era: str = "auto",
        spawn: Spawn | None = None,
        on_session_message: SessionMessage | None = None,
    ) -> None:
        self.server = server
        self.channel = channel
        self._era_pref = era
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._spawn = spawn
        self._on_session_message = on_session_message
        self._inflight: dict[int, _InFlight] = {}  # insertion order = age, for stdio attribution
        self._progress: dict[str, tuple[Sink, Any]] = {}
        self._relays: dict[Any, asyncio.Task[None]] = {}
        self.negotiated: Negotiated | None = None
        if not channel.attributes_messages:
            channel.on_message = self._unattributed  # type: ignore[attr-defined]

    async def connect(self) -> Negotiated:
        await self.channel.open()
        negotiated = None
        if self._era_pref in ("auto", *MODERN_VERSIONS):
            negotiated = await self._discover()
            if negotiated is None and self._era_pref != "auto":
                raise UpstreamProtocolError(self.server, f"does not speak {LATEST_MODERN} (pinned by era:)")
        if negotiated is None:
            negotiated = await self._initialize()
        self.negotiated = negotiated
        return negotiated

    def next_id(self) -> int:
        return next(self._ids)

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        client_capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        msg_id: int | None = None,
        sink: Sink | None = None,
        log_level: str | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its result. `msg_id` lets the caller cancel it later."""
        assert self.negotiated is not None, "connect() first"
        msg_id = self.next_id() if msg_id is None else msg_id
        token = None
        if sink is not None and params and isinstance(params.get("_meta"), dict):
            client_token = params["_meta"].get("progressToken")
            if isinstance(client_token, str | int) and not isinstance(client_token, bool):
                token = f"tw-{next(self._tokens)}"
                self._progress[token] = (sink, client_token)
                params = {**params, "_meta": {**params["_meta"], "progressToken": token}}
        if self.negotiated.era == "modern":
            params, hdrs = self._modern(method, params, client_capabilities or {}, client_info, log_level)
        else:
            params = _strip_envelope(params)
            hdrs = {"MCP-Protocol-Version": self.negotiated.protocol_version}
        if headers:
            hdrs.update(headers)
        self._inflight[msg_id] = _InFlight(sink, log_level)
        try:
            return await self._send(method, params, hdrs, msg_id, sink, log_level)
        finally:
            del self._inflight[msg_id]
            if token is not None:
                del self._progress[token]

    async def cancel(self, msg_id: int, reason: str) -> None:
        """Tell the server to stop working on a request we gave up on (best effort)."""
        assert self.negotiated is not None
        if self.negotiated.era == "modern" and self.channel.attributes_messages:
            return  # Stateless era over HTTP: the closed response stream is the cancellation.
        message = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": msg_id, "reason": reason},
        }
        await self.channel.notify(message, self._plain_headers())

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.channel.notify(message, self._plain_headers())

    async def close(self) -> None:
        for task in list(self._relays.values()):
            task.cancel()
        await self.channel.close()

    def on_message(self, msg: dict[str, Any]) -> None:
        """Session-level messages from the server's own stream (GET or listen)."""
        self._dispatch(msg, None, None)

    # --- inbound -------------------------------------------------------------------------------

    def _unattributed(self, msg: dict[str, Any]) -> None:
        """stdio: the message names no request. Progress finds its call by token; a
        request or log line goes to the oldest call that can take it."""
        target = next((f for f in self._inflight.values() if f.sink is not None), None)
        self._dispatch(msg, target.sink if target else None, target.log_level if target else None)

    def _dispatch(self, msg: dict[str, Any], sink: Sink | None, log_level: str | None) -> None:
        method = msg.get("method")
        raw_params = msg.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if "id" in msg:
            if isinstance(method, str):
                self._start_relay(msg, sink)
            return  # A response outside any request (e.g. the end of a listen stream): nothing to do.
        elif method == "notifications/progress":
            entry = self._progress.get(str(params.get("progressToken")))
            if entry is not None:
                target, client_token = entry
                target.notify("notifications/progress", {**params, "progressToken": client_token})
        elif method == "notifications/message":
            if sink is not None and admits(log_level, params.get("level")):
                sink.notify("notifications/message", params)
            elif sink is None and self._on_session_message is not None:
                self._on_session_message(msg)
        elif method == "notifications/cancelled":
            task = self._relays.get(params.get("requestId"))
            if task is not None:
                task.cancel()
        elif self._on_session_message is not None:
            self._on_session_message(msg)

    def _start_relay(self, msg: dict[str, Any], sink: Sink | None) -> None:
        if self._spawn is None:
            return
        upstream_id = msg["id"]

        async def relay() -> None:
            # Registered under the server's id, so its notifications/cancelled can stop it.
            task = asyncio.current_task()
            assert task is not None
            self._relays[upstream_id] = task
            try:
                await self._relay(msg, sink)
            finally:
                if self._relays.get(upstream_id) is task:
                    del self._relays[upstream_id]

        self._spawn(relay())

    async def _relay(self, msg: dict[str, Any], sink: Sink | None) -> None:
        method = msg["method"]
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"]}
        if method == "ping":
            reply["result"] = {}
        elif sink is None:
            reply["error"] = {"code": -32601, "message": f"no client is attached to answer {method!r}"}
        else:
            try:
                reply["result"] = await sink.request(method, msg.get("params"))
            except (ToolwayError, UpstreamRpcError) as exc:
                reply["error"] = to_error(exc)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # The server cancelled its own request: no answer is due.
                # The client went away (its session ended): the server still deserves an answer.
                reply["error"] = {"code": -32603, "message": f"the client that was asked {method!r} went away"}
        try:
            await self.channel.notify(reply, self._plain_headers())
        except ChannelClosed:
            pass

    # --- outbound ------------------------------------------------------------------------------

    def dress(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Params and headers for a stateless-era request the gateway makes on its own behalf."""
        return self._modern(method, params, {}, None, None)

    def _plain_headers(self) -> dict[str, str]:
        assert self.negotiated is not None
        return {"MCP-Protocol-Version": self.negotiated.protocol_version}

    def _modern(
        self,
        method: str,
        params: dict[str, Any] | None,
        capabilities: dict[str, Any],
        client_info: dict[str, Any] | None,
        log_level: str | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        assert self.negotiated is not None
        version = self.negotiated.protocol_version
        params = dict(params) if params else {}
        meta = dict(params.get("_meta") or {})
        meta[META_PROTOCOL_VERSION] = version
        meta[META_CLIENT_CAPABILITIES] = capabilities
        meta[META_CLIENT_INFO] = client_info or GATEWAY_INFO
        if log_level is not None:
            meta[META_LOG_LEVEL] = log_level
        params["_meta"] = meta
        headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
        name_key = NAME_BEARING_METHODS.get(method)
        if name_key is not None and isinstance(params.get(name_key), str):
            headers["Mcp-Name"] = encode_header_value(params[name_key])
        return params, headers

    async def _discover(self) -> Negotiated | None:
        meta = {
            META_PROTOCOL_VERSION: LATEST_MODERN,
            META_CLIENT_CAPABILITIES: {},
            META_CLIENT_INFO: GATEWAY_INFO,
        }
        headers = {"MCP-Protocol-Version": LATEST_MODERN, "Mcp-Method": "server/discover"}
        try:
            result = await self._send("server/discover", {"_meta": meta}, headers)
        except (UpstreamRpcError, UpstreamProtocolError):
            return None  # Not positive evidence of a stateless-era server: fall back.
        versions = result.get("supportedVersions")
        if not isinstance(versions, list):
            return None
        mutual = [v for v in MODERN_VERSIONS if v in versions]
        if not mutual:
            return None
        return Negotiated(
            era="modern",
            protocol_version=mutual[-1],
            server_info=_server_info(result),
            capabilities=_dict(result.get("capabilities")),
            instructions=result.get("instructions") if isinstance(result.get("instructions"), str) else None,
        )

    async def _initialize(self) -> Negotiated:
        self.channel.session_id = None
        params = {
            "protocolVersion": LATEST_HANDSHAKE,
            "capabilities": GATEWAY_CAPABILITIES,
            "clientInfo": GATEWAY_INFO,
        }
        result = await self._send("initialize", params, {})
        version = result.get("protocolVersion")
        if version not in HANDSHAKE_VERSIONS:
            raise UpstreamIncompatible(
                self.server,
                f"initialize answered protocol version {version!r}, which Toolway cannot bridge"
                f" (it speaks {', '.join(ALL_VERSIONS)})",
            )
        await self.channel.notify(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}, {"MCP-Protocol-Version": version}
        )
        info = result.get("serverInfo")
        return Negotiated(
            era="handshake",
            protocol_version=version,
            server_info=info if isinstance(info, dict) else {},
            capabilities=_dict(result.get("capabilities")),
            instructions=result.get("instructions") if isinstance(result.get("instructions"), str) else None,
        )

    async def _send(
        self,
        method: str,
        params: dict[str, Any] | None,
        headers: dict[str, str],
        msg_id: int | None = None,
        sink: Sink | None = None,
        log_level: str | None = None,
    ) -> dict[str, Any]:
        msg_id = next(self._ids) if msg_id is None else msg_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params

        def on_message(msg: dict[str, Any]) -> None:
            self._dispatch(msg, sink, log_level)

        try:
            answer = await self.channel.roundtrip(message, headers, on_message)
        except UpstreamHttpError as exc:
            raise UpstreamHttpStatus(self.server, str(exc)) from None
        if "error" in answer:
            error = answer["error"]
            if not (
                isinstance(error, dict)
                and isinstance(error.get("code"), int)
                and not isinstance(error.get("code"), bool)
                and isinstance(error.get("message"), str)
            ):
                raise UpstreamProtocolError(self.server, "answered with a malformed JSON-RPC error")
            raise UpstreamRpcError(self.server, error)
        result = answer.get("result")
        if not isinstance(result, dict):
            raise UpstreamProtocolError(self.server, f"answered {method} with a result that is not an object")
        return result


def _strip_envelope(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop the stateless-era `_meta` envelope keys that a handshake-era server would not expect."""
    if not params or not isinstance(params.get("_meta"), dict):
        return params
    meta = {k: v for k, v in params["_meta"].items() if k not in _ENVELOPE_KEYS}
    params = dict(params)
    if meta:
        params["_meta"] = meta
    else:
        del params["_meta"]
    return params


def _server_info(result: dict[str, Any]) -> dict[str, Any]:
    meta = result.get("_meta")
    info = meta.get("io.modelcontextprotocol/serverInfo") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        info = result.get("serverInfo")
    return info if isinstance(info, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
