"""One MCP session with one upstream server, in whichever era it speaks.

`connect` probes `server/discover` (2026-07-28) and falls back to the
`initialize` handshake, the way the official SDK clients negotiate. `request`
then dresses each call for that era: `_meta` envelope and routing headers for a
stateless-era server, the session for a handshake-era one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from toolway import __version__
from toolway.protocol.errors import UpstreamProtocolError, UpstreamRpcError
from toolway.protocol.modern import encode_header_value
from toolway.protocol.versions import (
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
from toolway.upstream.channel import Channel
from toolway.upstream.http import UpstreamHttpError

GATEWAY_INFO = {"name": "toolway", "version": __version__}
_ENVELOPE_KEYS = (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES, META_CLIENT_INFO)


@dataclass
class Negotiated:
    """What the upstream told us about itself when we connected."""

    era: Era
    protocol_version: str
    server_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None


class UpstreamClient:
    """Speaks MCP to one server over one channel.

    Raises (from every method): `ChannelClosed`/`SessionExpired` from the channel,
    `UpstreamRpcError` when the server answers with a JSON-RPC error, and
    `UpstreamProtocolError` when it answers with something that is not MCP.
    """

    def __init__(self, server: str, channel: Channel, *, era: str = "auto") -> None:
        self.server = server
        self.channel = channel
        self._era_pref = era
        self._ids = itertools.count(1)
        self.negotiated: Negotiated | None = None

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

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        client_capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        msg_id: int | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its result. `msg_id` lets the caller cancel it later."""
        assert self.negotiated is not None, "connect() first"
        if self.negotiated.era == "modern":
            params, hdrs = self._modern(method, params, client_capabilities or {}, client_info)
        else:
            params = _strip_envelope(params)
            hdrs = {"MCP-Protocol-Version": self.negotiated.protocol_version}
        if headers:
            hdrs.update(headers)
        return await self._send(method, params, hdrs, msg_id)

    def next_id(self) -> int:
        return next(self._ids)

    async def cancel(self, msg_id: int, reason: str) -> None:
        """Tell the server to stop working on a request we gave up on (best effort)."""
        assert self.negotiated is not None
        if self.negotiated.era == "modern" and self.channel.session_id is None and self.describe_http():
            return  # Stateless era over HTTP: the closed response stream is the cancellation.
        message = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": msg_id, "reason": reason},
        }
        await self.channel.notify(message, {"MCP-Protocol-Version": self.negotiated.protocol_version})

    def describe_http(self) -> bool:
        return self.channel.describe().startswith(("http://", "https://"))

    async def close(self) -> None:
        await self.channel.close()

    def _modern(
        self,
        method: str,
        params: dict[str, Any] | None,
        capabilities: dict[str, Any],
        client_info: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        assert self.negotiated is not None
        version = self.negotiated.protocol_version
        params = dict(params) if params else {}
        meta = dict(params.get("_meta") or {})
        meta[META_PROTOCOL_VERSION] = version
        meta[META_CLIENT_CAPABILITIES] = capabilities
        meta[META_CLIENT_INFO] = client_info or GATEWAY_INFO
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
        params = {"protocolVersion": LATEST_HANDSHAKE, "capabilities": {}, "clientInfo": GATEWAY_INFO}
        result = await self._send("initialize", params, {})
        version = result.get("protocolVersion")
        if version not in HANDSHAKE_VERSIONS:
            raise UpstreamProtocolError(
                self.server, f"initialize answered protocol version {version!r}, which Toolway cannot speak"
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
        self, method: str, params: dict[str, Any] | None, headers: dict[str, str], msg_id: int | None = None
    ) -> dict[str, Any]:
        msg_id = next(self._ids) if msg_id is None else msg_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            answer = await self.channel.roundtrip(message, headers)
        except UpstreamHttpError as exc:
            raise UpstreamProtocolError(self.server, str(exc)) from None
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
