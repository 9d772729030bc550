"""One exception tree for everything that becomes a JSON-RPC error, and the one mapping.

Exceptions are named after the state they report. `to_error` is the only place that
turns them into a JSON-RPC error object and an HTTP status.
"""

from __future__ import annotations

from typing import Any, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
UPSTREAM_UNAVAILABLE: Final = -32000  # "connection closed" in the SDKs' server-error range
REQUEST_TIMEOUT: Final = -32001
HEADER_MISMATCH: Final = -32020
MISSING_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
PERMISSION_DENIED: Final = -32003  # the caller is authenticated but lacks the scope (data.requiredScope)
# An enforced policy refused the call (data.policy, data.reason). Not -32003: no scope would
# help, so it must not draw the insufficient_scope step-up challenge.
POLICY_DENIED: Final = -32004
KILLED: Final = -32010  # an operator's kill switch turned the server or tool off (docs/routing.md)
TOOL_QUARANTINED: Final = -32030  # a pinned tool's definition changed upstream (registry/pinning.py)


class ToolwayError(Exception):
    """Base of every error that reaches a client as a JSON-RPC error."""

    code: int = INTERNAL_ERROR
    http_status: int = 200

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ParseError(ToolwayError):
    code = PARSE_ERROR
    http_status = 400


class InvalidRequest(ToolwayError):
    code = INVALID_REQUEST
    http_status = 400


class MethodNotFound(ToolwayError):
    code = METHOD_NOT_FOUND
    http_status = 404


class InvalidParams(ToolwayError):
    code = INVALID_PARAMS
    http_status = 400


class UnknownTarget(InvalidParams):
    """A tool, prompt or resource name that no server owns (the spec's -32602)."""

    http_status = 200


class HeaderMismatch(ToolwayError):
    code = HEADER_MISMATCH
    http_status = 400


class UnsupportedProtocolVersion(ToolwayError):
    code = UNSUPPORTED_PROTOCOL_VERSION
    http_status = 400


class MissingClientCapability(ToolwayError):
    """The server asked for something the client did not declare it can do."""

    code = MISSING_CLIENT_CAPABILITY
    http_status = 400


class SessionRequired(InvalidRequest):
    """A handshake-era request without `Mcp-Session-Id`."""


class SessionNotFound(ToolwayError):
    """Unknown or terminated handshake-era session: the client must initialize again."""

    code = INVALID_REQUEST
    http_status = 404


class SessionGone(SessionNotFound):
    """The upstream replica holding this session's state is gone: the session ends (HTTP 404),
    and the client starts a new one (Streamable HTTP transport, 2025-11-25: session management)."""


class AuthenticationFailed(ToolwayError):
    """No acceptable credentials: an HTTP 401 with `WWW-Authenticate`, never a JSON-RPC answer.

    `error` is the RFC 6750 error code ("invalid_request", "invalid_token"), or None when
    the request carried no credentials at all (RFC 6750 §3.1: then no error code is sent).
    """

    code = INVALID_REQUEST
    http_status = 401

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.error = error


class PermissionDenied(ToolwayError):
    """The caller may not do this: `data.requiredScope` names the missing permission."""

    code = PERMISSION_DENIED
    http_status = 403

    def __init__(self, message: str, *, required: str) -> None:
        super().__init__(message, data={"requiredScope": required})
        self.required = required


class PolicyDenied(ToolwayError):
    """An enforced policy refused the call; `data` names the policy and its reason."""

    code = POLICY_DENIED

    def __init__(self, policy: str, reason: str) -> None:
        super().__init__(f"denied by policy {policy!r}: {reason}", data={"policy": policy, "reason": reason})
        self.policy = policy
        self.reason = reason


class EgressDenied(ToolwayError):
    """An upstream URL points somewhere egress control forbids; the message names the rule."""

    code = INVALID_PARAMS
    http_status = 400


class UpstreamError(ToolwayError):
    """Something went wrong talking to one upstream server; the message names it.

    `kind` is the stable cause (`data.cause` on the wire). `delivered` is False only when
    the request provably never reached the server. `retryable` tells the client whether
    sending the same request again is safe and may succeed (`data.retryable`); the router
    sets it per call, since it depends on the tool's annotations.
    """

    kind = "upstream"
    delivered_by_default = True

    def __init__(
        self, server: str, cause: str, *, data: Any = None, delivered: bool | None = None, retryable: bool = False
    ) -> None:
        super().__init__(f"server {server!r}: {cause}", data={**(data or {}), "server": server})
        self.server = server
        self.cause = cause
        self.delivered = self.delivered_by_default if delivered is None else delivered
        self.retryable = retryable or not self.delivered


class UpstreamUnavailable(UpstreamError):
    """The server cannot be reached, or its process or connection died; the request was not sent."""

    code = UPSTREAM_UNAVAILABLE
    kind = "unavailable"
    delivered_by_default = False


class UpstreamRefused(UpstreamUnavailable):
    """The connection was refused (or the process was gone) before the request was written."""

    kind = "refused"


class UpstreamConnectionLost(UpstreamUnavailable):
    """The connection broke while the request was out: the server may have run it."""

    kind = "reset"
    delivered_by_default = True


class CircuitOpen(UpstreamUnavailable):
    """Every replica that could take the call has its circuit breaker open."""

    kind = "breaker_open"


class NoHealthyReplica(UpstreamUnavailable):
    """No replica of the server is connected, undrained and not ejected."""

    kind = "no_healthy_replica"


class Killed(UpstreamError):
    """An operator's kill switch turned this server or tool off (reversible, at run time)."""

    code = KILLED
    kind = "killed"


class UpstreamCredentialsFailed(UpstreamUnavailable):
    """The gateway could not get the credentials it presents to the server (e.g. its OAuth2 token)."""


class UpstreamTimeout(UpstreamError):
    """The server did not answer within the call's deadline."""

    code = REQUEST_TIMEOUT
    kind = "timeout"


class UpstreamProtocolError(UpstreamError):
    """The server answered with something that is not valid MCP."""

    code = INTERNAL_ERROR
    kind = "protocol"


class UpstreamHttpStatus(UpstreamProtocolError):
    """The server answered HTTP with a status and body that carry no JSON-RPC message."""

    kind = "http_status"


class UpstreamIncompatible(UpstreamProtocolError):
    """The server speaks no protocol version Toolway can bridge; it is not routed to."""


class ToolQuarantined(ToolwayError):
    """A pinned tool's definition changed upstream since it was approved (docs/registry.md).

    `data` carries the server, the tool and the changed fields; an operator approves the
    new definition with `toolway tools approve NAME`.
    """

    code = TOOL_QUARANTINED


class UpstreamRpcError(Exception):
    """The server answered with a JSON-RPC error: passed through to the client as it is."""

    def __init__(self, server: str, error: dict[str, Any]) -> None:
        super().__init__(f"server {server!r} answered error {error.get('code')}: {error.get('message')}")
        self.server = server
        self.error = error


# HTTP status for a JSON-RPC error code on the stateless-era wire (2026-07-28 transports).
MODERN_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
    PERMISSION_DENIED: 403,  # with WWW-Authenticate: Bearer error="insufficient_scope" (step-up)
}


class ClientRpcError(UpstreamRpcError):
    """The client answered a relayed request with a JSON-RPC error: passed back as it is."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__("<client>", error)


def to_error(exc: BaseException) -> dict[str, Any]:
    """Map an exception to its JSON-RPC error object. Never raises.

    Anything that is not a Toolway error is an internal fault: its details stay
    in the log, never on the wire.
    """
    if isinstance(exc, UpstreamError):
        data = {**exc.data, "cause": exc.kind, "retryable": exc.retryable}
        return {"code": exc.code, "message": exc.message, "data": data}
    if isinstance(exc, ToolwayError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return error
    if isinstance(exc, UpstreamRpcError):
        return dict(exc.error)
    return {"code": INTERNAL_ERROR, "message": "internal error in the gateway"}


def modern_status(error: dict[str, Any]) -> int:
    """The HTTP status that carries a JSON-RPC error to a stateless-era client."""
    code = error.get("code")
    return MODERN_STATUS.get(code, 200) if isinstance(code, int) else 200
