"""The JSON-RPC 2.0 envelope: one orjson parse, a look at the envelope only.

The hot path parses each message once and reads `jsonrpc`, `id`, `method` and
`params`; everything else is forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from toolway.protocol.errors import InvalidRequest, ParseError

RequestId = str | int
Kind = Literal["request", "notification", "response"]


@dataclass(slots=True)
class Message:
    """One decoded JSON-RPC message; `raw` is the decoded object itself."""

    kind: Kind
    raw: dict[str, Any]
    id: RequestId | None
    method: str | None
    params: dict[str, Any] | None


def decode(body: bytes) -> Message:
    """Decode one JSON-RPC message.

    Raises:
        ParseError: the body is not JSON.
        InvalidRequest: the JSON is not a single JSON-RPC 2.0 message.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"Parse error: body is not valid JSON ({exc.args[0]})") from None
    return classify(obj)


def classify(obj: Any) -> Message:
    """Classify a decoded object as request, notification or response.

    Raises:
        InvalidRequest: not a JSON-RPC 2.0 message (batches are not supported).
    """
    if isinstance(obj, list):
        raise InvalidRequest("Invalid Request: JSON-RPC batches are not supported")
    if not isinstance(obj, dict):
        raise InvalidRequest("Invalid Request: a JSON-RPC message must be an object")
    if obj.get("jsonrpc") != "2.0":
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"')
    msg_id = obj.get("id")
    if msg_id is not None and (isinstance(msg_id, bool) or not isinstance(msg_id, str | int)):
        raise InvalidRequest('Invalid Request: "id" must be a string or an integer')
    method = obj.get("method")
    if method is not None:
        if not isinstance(method, str) or not method:
            raise InvalidRequest('Invalid Request: "method" must be a non-empty string')
        params = obj.get("params")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest('Invalid Request: "params" must be an object')
        if "id" in obj:
            if msg_id is None:
                raise InvalidRequest('Invalid Request: "id" must not be null')
            return Message("request", obj, msg_id, method, params)
        return Message("notification", obj, None, method, params)
    if msg_id is not None and ("result" in obj) != ("error" in obj):
        return Message("response", obj, msg_id, None, None)
    if "result" in obj and "error" in obj:
        raise InvalidRequest('Invalid Request: a response carries "result" or "error", not both')
    raise InvalidRequest('Invalid Request: a message needs a "method", or an "id" with "result" or "error"')


def request_id_of(body: bytes) -> RequestId | None:
    """Best-effort id of a message that failed validation, for the error reply."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        msg_id = obj.get("id")
        if isinstance(msg_id, str | int) and not isinstance(msg_id, bool):
            return msg_id
    return None


def result(msg_id: RequestId, value: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "result": value})


def error(msg_id: RequestId | None, err: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "error": err})
