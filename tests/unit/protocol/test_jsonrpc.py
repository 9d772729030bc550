"""The JSON-RPC 2.0 envelope: decode, classify, request_id_of and the encoders."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from toolway.protocol import jsonrpc
from toolway.protocol.errors import INVALID_REQUEST, PARSE_ERROR, InvalidRequest, ParseError


def _body(obj: Any) -> bytes:
    return orjson.dumps(obj)


# --- decode: parse errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"{'jsonrpc': '2.0'}",  # single quotes are not JSON
        b'{"jsonrpc": "2.0",}',  # trailing comma
        b"NaN",
        b'{"jsonrpc": "2.0", "id": 1, "method": "x"} trailing',
        b"\xff\xfe\x00",  # not UTF-8
        b'"\\ud800"',  # lone surrogate
        b"[" * 2000 + b"]" * 2000,  # nesting deeper than the parser allows
    ],
)
def test_decode_refuses_non_json_with_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        jsonrpc.decode(body)
    assert info.value.code == PARSE_ERROR
    assert info.value.message.startswith("Parse error")


def test_decode_valid_request() -> None:
    msg = jsonrpc.decode(b'{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"c"}}')
    assert msg.kind == "request"
    assert msg.id == 7
    assert msg.method == "tools/list"
    assert msg.params == {"cursor": "c"}
    assert msg.raw == {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"cursor": "c"}}


def test_decode_invalid_request_is_not_a_parse_error() -> None:
    with pytest.raises(InvalidRequest) as info:
        jsonrpc.decode(b"[]")
    assert not isinstance(info.value, ParseError)
    assert info.value.code == INVALID_REQUEST


# --- classify: what is not a single JSON-RPC 2.0 message ------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        [],
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
        [{"jsonrpc": "2.0", "method": "notifications/initialized"}],
    ],
)
def test_batches_are_rejected(obj: Any) -> None:
    with pytest.raises(InvalidRequest, match="batches are not supported"):
        jsonrpc.classify(obj)


@pytest.mark.parametrize("obj", [None, 1, 1.5, "ping", True, False])
def test_non_object_is_rejected(obj: Any) -> None:
    with pytest.raises(InvalidRequest, match="must be an object"):
        jsonrpc.classify(obj)


@pytest.mark.parametrize(
    "envelope",
    [
        {},
        {"jsonrpc": "1.0"},
        {"jsonrpc": "2"},
        {"jsonrpc": 2.0},
        {"jsonrpc": None},
        {"jsonrpc": "2.0 "},
        {"JSONRPC": "2.0"},
    ],
)
def test_jsonrpc_must_be_exactly_2_0(envelope: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match=re.escape('"jsonrpc" must be "2.0"')):
        jsonrpc.classify({**envelope, "id": 1, "method": "ping"})


@pytest.mark.parametrize(
    "bad_id",
    [True, False, 1.5, 1.0, [], [1], {}, {"a": 1}],
)
@pytest.mark.parametrize(
    "shape",
    [
        {"method": "ping"},  # request
        {"result": {}},  # response
        {"error": {"code": 1, "message": "m"}},  # error response
    ],
)
def test_id_must_be_string_or_integer(bad_id: Any, shape: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match='"id" must be a string or an integer'):
        jsonrpc.classify({"jsonrpc": "2.0", "id": bad_id, **shape})


def test_null_id_with_method_is_rejected_not_treated_as_notification() -> None:
    with pytest.raises(InvalidRequest, match='"id" must not be null'):
        jsonrpc.classify({"jsonrpc": "2.0", "id": None, "method": "tools/list"})


@pytest.mark.parametrize("method", ["", 0, 1, True, [], {}, ["ping"]])
def test_method_must_be_non_empty_string(method: Any) -> None:
    with pytest.raises(InvalidRequest, match='"method" must be a non-empty string'):
        jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "method": method})


@pytest.mark.parametrize("params", [[], [1, 2], "x", 1, True, 0.5])
@pytest.mark.parametrize("with_id", [True, False])
def test_params_must_be_an_object(params: Any, with_id: bool) -> None:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": "tools/call", "params": params}
    if with_id:
        obj["id"] = 1
    with pytest.raises(InvalidRequest, match='"params" must be an object'):
        jsonrpc.classify(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"jsonrpc": "2.0"},
        {"jsonrpc": "2.0", "id": 1},  # an id but neither result nor error
        {"jsonrpc": "2.0", "result": {}},  # a result without an id
        {"jsonrpc": "2.0", "id": None, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}},
        {"jsonrpc": "2.0", "method": None, "id": 1},
        {"jsonrpc": "2.0", "params": {}},
    ],
)
def test_messages_that_are_neither_request_nor_response(obj: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match='needs a "method"'):
        jsonrpc.classify(obj)


# --- classify: the three kinds --------------------------------------------------------------------


@pytest.mark.parametrize("msg_id", [0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, "", "abc", "1", "ünïcode"])
def test_request_keeps_its_id(msg_id: Any) -> None:
    msg = jsonrpc.classify({"jsonrpc": "2.0", "id": msg_id, "method": "ping"})
    assert msg.kind == "request"
    assert msg.id == msg_id
    assert type(msg.id) is type(msg_id)
    assert msg.method == "ping"
    assert msg.params is None


def test_request_with_null_params_has_no_params() -> None:
    msg = jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": None})
    assert msg.kind == "request"
    assert msg.params is None


def test_request_with_empty_params() -> None:
    msg = jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}})
    assert msg.params == {}


def test_notification_has_no_id() -> None:
    obj = {"jsonrpc": "2.0", "method": "notifications/initialized", "params": {"a": 1}}
    msg = jsonrpc.classify(obj)
    assert msg.kind == "notification"
    assert msg.id is None
    assert msg.method == "notifications/initialized"
    assert msg.params == {"a": 1}
    assert msg.raw is obj


@pytest.mark.parametrize(
    "payload",
    [{"result": {}}, {"result": None}, {"error": {"code": -1, "message": "m"}}, {"error": None}],
)
@pytest.mark.parametrize("msg_id", [1, "req-1", 0])
def test_response(payload: dict[str, Any], msg_id: Any) -> None:
    obj = {"jsonrpc": "2.0", "id": msg_id, **payload}
    msg = jsonrpc.classify(obj)
    assert msg.kind == "response"
    assert msg.id == msg_id
    assert msg.method is None
    assert msg.params is None
    assert msg.raw is obj


def test_unknown_members_are_kept_untouched_in_raw() -> None:
    obj = {"jsonrpc": "2.0", "id": 1, "method": "x", "extra": {"deep": [1, 2]}}
    msg = jsonrpc.decode(_body(obj))
    assert msg.raw == obj


def test_big_integers_beyond_64_bits_are_not_integer_ids() -> None:
    # orjson turns them into floats, which are not valid ids.
    with pytest.raises(InvalidRequest, match='"id"'):
        jsonrpc.decode(b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}')


# --- request_id_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"id": 5}', 5),
        (b'{"id": "abc"}', "abc"),
        (b'{"id": 0}', 0),
        (b'{"jsonrpc": "1.0", "id": 3, "method": 7}', 3),  # invalid otherwise, id still useful
        (b'{"id": true}', None),
        (b'{"id": false}', None),
        (b'{"id": 1.5}', None),
        (b'{"id": null}', None),
        (b'{"id": [1]}', None),
        (b'{"id": {"a": 1}}', None),
        (b"{}", None),
        (b'[{"id": 1}]', None),
        (b"5", None),
        (b'"id"', None),
        (b"not json", None),
        (b"", None),
        (b"\xff", None),
    ],
)
def test_request_id_of(body: bytes, expected: Any) -> None:
    assert jsonrpc.request_id_of(body) == expected
    assert type(jsonrpc.request_id_of(body)) is type(expected)


# --- encoders -------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_id", [1, "abc", 0, 2**64 - 1])
def test_result_encoder(msg_id: Any) -> None:
    out = orjson.loads(jsonrpc.result(msg_id, {"tools": [], "x": "é"}))
    assert out == {"jsonrpc": "2.0", "id": msg_id, "result": {"tools": [], "x": "é"}}


@pytest.mark.parametrize("msg_id", [1, "abc", None])
def test_error_encoder(msg_id: Any) -> None:
    err = {"code": -32600, "message": "Invalid Request", "data": {"k": [1]}}
    out = orjson.loads(jsonrpc.error(msg_id, err))
    assert out == {"jsonrpc": "2.0", "id": msg_id, "error": err}


def test_encoders_produce_messages_that_classify_as_responses() -> None:
    ok = jsonrpc.decode(jsonrpc.result("a", {}))
    bad = jsonrpc.decode(jsonrpc.error(3, {"code": -1, "message": "m"}))
    assert (ok.kind, ok.id) == ("response", "a")
    assert (bad.kind, bad.id) == ("response", 3)


def test_encoders_return_compact_bytes() -> None:
    out = jsonrpc.result(1, {})
    assert isinstance(out, bytes)
    assert out == b'{"jsonrpc":"2.0","id":1,"result":{}}'


def test_response_with_both_result_and_error_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": -1, "message": "m"}})
