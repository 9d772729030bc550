"""The exception tree and its one mapping to JSON-RPC error objects and HTTP statuses."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.protocol import errors
from toolway.protocol.errors import (
    CircuitOpen,
    HeaderMismatch,
    InvalidParams,
    InvalidRequest,
    Killed,
    MethodNotFound,
    NoHealthyReplica,
    ParseError,
    SessionNotFound,
    SessionRequired,
    ToolwayError,
    UnknownTarget,
    UnsupportedProtocolVersion,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamHttpStatus,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamRpcError,
    UpstreamTimeout,
    UpstreamUnavailable,
    modern_status,
    to_error,
)


@pytest.mark.parametrize(
    ("cls", "code", "http_status"),
    [
        (ParseError, -32700, 400),
        (InvalidRequest, -32600, 400),
        (MethodNotFound, -32601, 404),
        (InvalidParams, -32602, 400),
        (UnknownTarget, -32602, 200),
        (HeaderMismatch, -32020, 400),
        (UnsupportedProtocolVersion, -32022, 400),
        (SessionRequired, -32600, 400),
        (SessionNotFound, -32600, 404),
        (ToolwayError, -32603, 200),
    ],
)
def test_to_error_for_local_errors(cls: type[ToolwayError], code: int, http_status: int) -> None:
    exc = cls("something specific")
    assert to_error(exc) == {"code": code, "message": "something specific"}
    assert exc.code == code
    assert exc.http_status == http_status
    assert str(exc) == "something specific"


@pytest.mark.parametrize("data", [{"supported": ["2026-07-28"], "requested": "x"}, [1, 2], "text", 0, False, {}])
def test_to_error_carries_data(data: Any) -> None:
    err = to_error(UnsupportedProtocolVersion("Unsupported protocol version", data=data))
    assert err == {"code": -32022, "message": "Unsupported protocol version", "data": data}


def test_to_error_omits_data_when_none() -> None:
    assert "data" not in to_error(InvalidParams("bad", data=None))


def test_subclass_relationships() -> None:
    assert issubclass(UnknownTarget, InvalidParams)
    assert issubclass(SessionRequired, InvalidRequest)
    assert issubclass(SessionNotFound, ToolwayError)
    for cls in (UpstreamUnavailable, UpstreamTimeout, UpstreamProtocolError):
        assert issubclass(cls, UpstreamError)
        assert issubclass(cls, ToolwayError)
    assert not issubclass(UpstreamRpcError, ToolwayError)


@pytest.mark.parametrize(
    ("cls", "code", "cause", "retryable"),
    [
        (UpstreamUnavailable, -32000, "unavailable", True),  # not sent: trying again is safe
        (UpstreamRefused, -32000, "refused", True),
        (UpstreamConnectionLost, -32000, "reset", False),  # may have run: final unless the router says otherwise
        (CircuitOpen, -32000, "breaker_open", True),
        (NoHealthyReplica, -32000, "no_healthy_replica", True),
        (UpstreamTimeout, -32001, "timeout", False),
        (UpstreamProtocolError, -32603, "protocol", False),
        (UpstreamHttpStatus, -32603, "http_status", False),
        (Killed, -32010, "killed", False),
        (UpstreamError, -32603, "upstream", False),
    ],
)
def test_upstream_errors_name_the_server_and_cause(
    cls: type[UpstreamError], code: int, cause: str, retryable: bool
) -> None:
    exc = cls("weather", "connection refused")
    err = to_error(exc)
    assert err["code"] == code
    assert err["message"] == "server 'weather': connection refused"
    assert err["data"] == {"server": "weather", "cause": cause, "retryable": retryable}
    assert exc.server == "weather"
    assert exc.cause == "connection refused"
    assert exc.http_status == 200


def test_upstream_error_merges_extra_data() -> None:
    err = to_error(UpstreamTimeout("db", "no answer within 30s", data={"timeout": 30}))
    assert err["data"] == {"server": "db", "timeout": 30, "cause": "timeout", "retryable": False}


def test_the_router_can_mark_a_delivered_failure_retryable() -> None:
    exc = UpstreamConnectionLost("db", "connection reset")
    exc.retryable = True  # e.g. the tool is annotated idempotentHint
    assert to_error(exc)["data"]["retryable"] is True


def test_upstream_rpc_error_is_passed_through_as_is() -> None:
    upstream = {"code": -32602, "message": "Unknown tool: x", "data": {"detail": [1]}}
    exc = UpstreamRpcError("weather", upstream)
    assert to_error(exc) == upstream
    assert exc.server == "weather"
    assert "weather" in str(exc)
    assert "-32602" in str(exc)


@pytest.mark.parametrize("code", [-32000, 1, 42, -32603])
def test_upstream_rpc_error_keeps_custom_codes(code: int) -> None:
    assert to_error(UpstreamRpcError("s", {"code": code, "message": "m"}))["code"] == code


def test_upstream_rpc_error_str_survives_a_sparse_error() -> None:
    exc = UpstreamRpcError("s", {})
    assert "s" in str(exc)


class _Secretive(Exception):
    pass


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("password=hunter2 at /etc/secret"),
        KeyError("api_key"),
        ValueError("db://user:pass@host"),
        _Secretive("token abc123"),
        AssertionError("internal invariant"),
        ZeroDivisionError("division by zero"),
        BaseException("base"),
    ],
)
def test_unknown_exceptions_become_generic_internal_errors(exc: BaseException) -> None:
    err = to_error(exc)
    assert err == {"code": -32603, "message": "internal error in the gateway"}
    rendered = repr(err)
    for leak in ("hunter2", "api_key", "pass@", "abc123", "invariant", type(exc).__name__):
        assert leak not in rendered


def test_to_error_never_raises_on_odd_exceptions() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert to_error(Broken())["code"] == -32603


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (-32700, 400),
        (-32600, 400),
        (-32602, 400),
        (-32020, 400),
        (-32021, 400),
        (-32022, 400),
        (-32601, 404),
        (-32603, 200),
        (-32000, 200),
        (-32001, 200),
        (0, 200),
        (12345, 200),
    ],
)
def test_modern_status_table(code: int, status: int) -> None:
    assert modern_status({"code": code, "message": "m"}) == status


@pytest.mark.parametrize("code", [None, "-32700", -32700.0, [-32700], True])
def test_modern_status_of_non_integer_codes_is_200(code: Any) -> None:
    assert modern_status({"code": code}) == 200


def test_modern_status_without_code_is_200() -> None:
    assert modern_status({}) == 200


@pytest.mark.parametrize(
    "exc",
    [
        ParseError("p"),
        InvalidRequest("r"),
        MethodNotFound("m"),
        InvalidParams("i"),
        HeaderMismatch("h"),
        UnsupportedProtocolVersion("u"),
        SessionRequired("s"),
    ],
)
def test_modern_status_agrees_with_exception_status(exc: ToolwayError) -> None:
    assert modern_status(to_error(exc)) == exc.http_status


def test_error_code_constants() -> None:
    assert errors.PARSE_ERROR == -32700
    assert errors.INVALID_REQUEST == -32600
    assert errors.METHOD_NOT_FOUND == -32601
    assert errors.INVALID_PARAMS == -32602
    assert errors.INTERNAL_ERROR == -32603
    assert errors.UPSTREAM_UNAVAILABLE == -32000
    assert errors.REQUEST_TIMEOUT == -32001
    assert errors.HEADER_MISMATCH == -32020
    assert errors.MISSING_CLIENT_CAPABILITY == -32021
    assert errors.UNSUPPORTED_PROTOCOL_VERSION == -32022
