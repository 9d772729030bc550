"""The 2026-07-28 request ladder, routing headers and the base64 header sentinel."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from toolway.protocol import modern
from toolway.protocol.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    UNSUPPORTED_PROTOCOL_VERSION,
    HeaderMismatch,
    InvalidParams,
    UnsupportedProtocolVersion,
)
from toolway.protocol.versions import (
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
)

V = MODERN_VERSIONS[-1]
UNSUPPORTED = "2099-01-01"


def _meta(version: Any = V, caps: Any = None, info: Any = None, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {
        META_PROTOCOL_VERSION: version,
        META_CLIENT_CAPABILITIES: {} if caps is None else caps,
    }
    if info is not None:
        meta[META_CLIENT_INFO] = info
    for key in drop:
        meta.pop(key)
    return meta


def _params(meta: Any, **extra: Any) -> dict[str, Any]:
    return {"_meta": meta, **extra}


def _headers(method: str, version: Any = V, name: str | None = None) -> dict[str, Any]:
    headers = {"mcp-protocol-version": version, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def _b64(text: str) -> str:
    return f"=?base64?{base64.b64encode(text.encode()).decode()}?="


# --- check_request: the happy path ----------------------------------------------------------------


def test_valid_request_returns_envelope() -> None:
    info = {"name": "agent", "version": "1"}
    caps = {"sampling": {}}
    env = modern.check_request("tools/list", _params(_meta(caps=caps, info=info)), _headers("tools/list"))
    assert env == modern.Envelope(protocol_version=V, client_capabilities=caps, client_info=info)


@pytest.mark.parametrize("info", ["agent", 1, ["a"], True])
def test_non_object_client_info_becomes_none(info: Any) -> None:
    env = modern.check_request("ping", _params(_meta(info=info)), None)
    assert env.client_info is None


def test_envelope_is_frozen() -> None:
    env = modern.check_request("ping", _params(_meta()), None)
    with pytest.raises(AttributeError):
        env.protocol_version = "x"  # type: ignore[misc]


# --- check_request: rung 1, the _meta envelope ----------------------------------------------------


@pytest.mark.parametrize("params", [None, {}, {"_meta": None}, {"_meta": "x"}, {"_meta": []}, {"_meta": 1}])
@pytest.mark.parametrize("headers", [None, "mismatching"])
def test_missing_meta_is_invalid_params(params: Any, headers: Any) -> None:
    # Even headers that disagree with everything do not come first: _meta is rung one.
    hdrs = None if headers is None else _headers("other/method", version=UNSUPPORTED)
    with pytest.raises(InvalidParams) as info:
        modern.check_request("tools/list", params, hdrs)
    assert info.value.code == INVALID_PARAMS
    assert "_meta" in info.value.message


@pytest.mark.parametrize(
    ("drop", "named", "not_named"),
    [
        ((META_PROTOCOL_VERSION,), [META_PROTOCOL_VERSION], [META_CLIENT_CAPABILITIES]),
        ((META_CLIENT_CAPABILITIES,), [META_CLIENT_CAPABILITIES], [META_PROTOCOL_VERSION]),
        (
            (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES),
            [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES],
            [],
        ),
    ],
)
def test_missing_meta_keys_are_named(drop: tuple[str, ...], named: list[str], not_named: list[str]) -> None:
    with pytest.raises(InvalidParams) as info:
        # Mismatching headers must not be reported before the missing keys.
        modern.check_request("tools/list", _params(_meta(drop=drop)), _headers("x", version="y"))
    message = info.value.message
    assert "missing" in message
    for key in named:
        assert key in message
    for key in not_named:
        assert key not in message


# --- check_request: rung 2, headers against the body ----------------------------------------------


@pytest.mark.parametrize("header_version", ["2025-06-18", UNSUPPORTED, "", None, V + " "])
def test_protocol_version_header_mismatch(header_version: Any) -> None:
    headers = _headers("tools/list", version=header_version)
    if header_version is None:
        del headers["mcp-protocol-version"]
    with pytest.raises(HeaderMismatch) as info:
        modern.check_request("tools/list", _params(_meta()), headers)
    assert info.value.code == HEADER_MISMATCH
    assert "MCP-Protocol-Version" in info.value.message


def test_header_mismatch_comes_before_unsupported_version() -> None:
    # A client that disagrees with itself is told so before it is told its version is unsupported.
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/list", _params(_meta(version=UNSUPPORTED)), _headers("tools/list", V))


def test_header_mismatch_comes_before_non_string_version() -> None:
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/list", _params(_meta(version=20260728)), _headers("tools/list", V))


def test_header_mismatch_comes_before_bad_capabilities() -> None:
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/list", _params(_meta(caps="nope")), _headers("tools/list", "x"))


@pytest.mark.parametrize("header_method", ["tools/call", "TOOLS/LIST", "", None, "tools/list "])
def test_method_header_mismatch(header_method: Any) -> None:
    headers = _headers("tools/list")
    headers["mcp-method"] = header_method
    if header_method is None:
        del headers["mcp-method"]
    with pytest.raises(HeaderMismatch) as info:
        modern.check_request("tools/list", _params(_meta()), headers)
    assert "Mcp-Method" in info.value.message


def test_version_rung_runs_before_method_rung() -> None:
    with pytest.raises(HeaderMismatch, match="MCP-Protocol-Version"):
        modern.check_request("tools/list", _params(_meta()), _headers("other", version="x"))


NAME_CASES = [
    ("tools/call", "name", "get_weather"),
    ("prompts/get", "name", "summarise"),
    ("resources/read", "uri", "file:///tmp/a.txt"),
]


@pytest.mark.parametrize(("method", "key", "value"), NAME_CASES)
def test_name_header_matching_body_passes(method: str, key: str, value: str) -> None:
    params = _params(_meta(), **{key: value})
    env = modern.check_request(method, params, _headers(method, name=value))
    assert env.protocol_version == V


@pytest.mark.parametrize(("method", "key", "value"), NAME_CASES)
@pytest.mark.parametrize("header", ["other", "", None, "GET_WEATHER"])
def test_name_header_mismatch(method: str, key: str, value: str, header: str | None) -> None:
    params = _params(_meta(), **{key: value})
    with pytest.raises(HeaderMismatch) as info:
        modern.check_request(method, params, _headers(method, name=header))
    assert "Mcp-Name" in info.value.message
    assert repr(key) in info.value.message


@pytest.mark.parametrize(("method", "key"), [(m, k) for m, k, _ in NAME_CASES])
@pytest.mark.parametrize("value", ["日本語ツール", " leading-space", "trailing ", "tab\there", "=?base64?x?="])
def test_base64_sentinel_name_header_matches(method: str, key: str, value: str) -> None:
    params = _params(_meta(), **{key: value})
    modern.check_request(method, params, _headers(method, name=_b64(value)))
    # and exactly what encode_header_value produces
    modern.check_request(method, params, _headers(method, name=modern.encode_header_value(value)))


@pytest.mark.parametrize(("method", "key", "value"), NAME_CASES)
def test_base64_sentinel_of_a_different_value_mismatches(method: str, key: str, value: str) -> None:
    params = _params(_meta(), **{key: value})
    with pytest.raises(HeaderMismatch):
        modern.check_request(method, params, _headers(method, name=_b64(value + "x")))


@pytest.mark.parametrize(("method", "key", "value"), NAME_CASES)
def test_malformed_sentinel_name_header_mismatches(method: str, key: str, value: str) -> None:
    params = _params(_meta(), **{key: value})
    with pytest.raises(HeaderMismatch):
        modern.check_request(method, params, _headers(method, name="=?base64?!!!?="))


def test_literal_sentinel_header_does_not_match_the_literal_body_value() -> None:
    # The header is decoded before comparison, so an un-encoded sentinel-looking name mismatches.
    value = _b64("x")
    params = _params(_meta(), name=value)
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/call", params, _headers("tools/call", name=value))


@pytest.mark.parametrize(("method", "key"), [(m, k) for m, k, _ in NAME_CASES])
def test_name_rung_skipped_when_body_has_no_name(method: str, key: str) -> None:
    modern.check_request(method, _params(_meta()), _headers(method, name="anything"))
    modern.check_request(method, _params(_meta()), _headers(method))


def test_name_header_not_checked_for_other_methods() -> None:
    params = _params(_meta(), name="x", uri="y")
    modern.check_request("tools/list", params, _headers("tools/list", name="something-else"))


def test_non_string_body_name_mismatches_string_header() -> None:
    params = _params(_meta(), name=5)
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/call", params, _headers("tools/call", name="5"))


def test_name_key_is_uri_for_resources_read() -> None:
    # resources/read compares the uri, not a "name".
    params = _params(_meta(), uri="file:///a", name="other")
    modern.check_request("resources/read", params, _headers("resources/read", name="file:///a"))
    with pytest.raises(HeaderMismatch, match="'uri'"):
        modern.check_request("resources/read", params, _headers("resources/read", name="other"))


# --- check_request: rung 3, the version -----------------------------------------------------------


@pytest.mark.parametrize("with_headers", [True, False])
@pytest.mark.parametrize("version", [UNSUPPORTED, "2025-06-18", "2025-11-25", "", "2026-07-28 "])
def test_unsupported_version(version: str, with_headers: bool) -> None:
    headers = _headers("tools/list", version=version) if with_headers else None
    with pytest.raises(UnsupportedProtocolVersion) as info:
        modern.check_request("tools/list", _params(_meta(version=version)), headers)
    assert info.value.code == UNSUPPORTED_PROTOCOL_VERSION
    assert info.value.data == {"supported": list(MODERN_VERSIONS), "requested": version}


@pytest.mark.parametrize("version", [None, 20260728, 1.5, True, ["2026-07-28"], {"v": V}])
def test_non_string_version_without_headers_is_invalid_params(version: Any) -> None:
    with pytest.raises(InvalidParams, match="must be a string"):
        modern.check_request("tools/list", _params(_meta(version=version)), None)


@pytest.mark.parametrize("caps", [None, "x", [], 1, True])
def test_non_object_capabilities_is_invalid_params(caps: Any) -> None:
    meta = _meta()
    meta[META_CLIENT_CAPABILITIES] = caps
    with pytest.raises(InvalidParams, match="capabilities"):
        modern.check_request("tools/list", _params(meta), _headers("tools/list"))


def test_unsupported_version_comes_before_bad_capabilities() -> None:
    meta = _meta(version=UNSUPPORTED)
    meta[META_CLIENT_CAPABILITIES] = "x"
    with pytest.raises(UnsupportedProtocolVersion):
        modern.check_request("tools/list", _params(meta), None)


def test_headers_none_skips_every_header_rung() -> None:
    params = _params(_meta(), name="x")
    env = modern.check_request("tools/call", params, None)
    assert env.protocol_version == V


def test_empty_headers_mapping_is_not_the_same_as_none() -> None:
    with pytest.raises(HeaderMismatch):
        modern.check_request("tools/list", _params(_meta()), {})


# --- duplicated_routing_header --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], None),
        ([(b"mcp-method", b"a")], None),
        ([(b"mcp-method", b"a"), (b"mcp-name", b"b"), (b"mcp-protocol-version", b"c")], None),
        ([(b"mcp-method", b"a"), (b"mcp-method", b"a")], "mcp-method"),
        ([(b"mcp-name", b"a"), (b"host", b"x"), (b"mcp-name", b"b")], "mcp-name"),
        ([(b"mcp-protocol-version", b"1"), (b"mcp-protocol-version", b"2")], "mcp-protocol-version"),
        ([(b"accept", b"a"), (b"accept", b"b"), (b"cookie", b"1"), (b"cookie", b"2")], None),
        ([(b"mcp-session-id", b"1"), (b"mcp-session-id", b"2")], None),  # not a routing header
        ([(b"mcp-param-x", b"1"), (b"mcp-param-x", b"2")], None),
    ],
)
def test_duplicated_routing_header(raw: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert modern.duplicated_routing_header(raw) == expected


def test_duplicated_routing_header_reports_the_first_duplicated() -> None:
    raw = [(b"mcp-name", b"1"), (b"mcp-method", b"1"), (b"mcp-method", b"2"), (b"mcp-name", b"2")]
    assert modern.duplicated_routing_header(raw) == "mcp-method"


def test_duplicated_routing_header_accepts_a_generator() -> None:
    raw = ((name, b"v") for name in (b"mcp-name", b"mcp-name"))
    assert modern.duplicated_routing_header(raw) == "mcp-name"


# --- encode_header_value / decode_header_value ----------------------------------------------------


@pytest.mark.parametrize("value", ["get_weather", "a b", "file:///tmp/x?y=1#z", "~!@#$%^&*()", "", "x=?y"])
def test_safe_values_are_left_alone(value: str) -> None:
    assert modern.encode_header_value(value) == value
    assert modern.decode_header_value(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "日本語",
        "café",
        "emoji 🎉",
        " leading",
        "trailing ",
        "\tTab",
        "line\nbreak",
        "cr\rlf",
        "nul\x00",
        "del\x7f",
        "=?base64?QQ==?=",  # looks like a sentinel: must be wrapped, not passed through
        "=?base64??=",
        " ",
    ],
)
def test_unsafe_values_round_trip_through_the_sentinel(value: str) -> None:
    encoded = modern.encode_header_value(value)
    assert encoded.startswith("=?base64?")
    assert encoded.endswith("?=")
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert modern.decode_header_value(encoded) == value


def test_encode_uses_standard_padded_base64_of_utf8() -> None:
    assert modern.encode_header_value("é") == "=?base64?w6k=?="


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("=?base64?aGVsbG8=?=", "hello"),
        ("=?base64?w6k=?=", "é"),
        ("=?base64??=", ""),
        ("=?base64?aGVsbG8=?= ", "=?base64?aGVsbG8=?= "),  # not a sentinel at all: passed through
        ("x=?base64?aGVsbG8=?=", "x=?base64?aGVsbG8=?="),
        ("=?BASE64?aGVsbG8=?=", "=?BASE64?aGVsbG8=?="),  # the sentinel is case-sensitive
        ("=?base64?QQ==?=\n", "=?base64?QQ==?=\n"),  # a trailing newline: not a sentinel
        ("=?base64?QU\nJD?=", "=?base64?QU\nJD?="),
    ],
)
def test_decode_header_value(value: str | None, expected: str | None) -> None:
    assert modern.decode_header_value(value) == expected


@pytest.mark.parametrize(
    "payload",
    [
        "!!!!",  # not base64
        "aGVsbG8",  # missing padding
        "aGVsbG8==",  # too much padding
        "aGVs bG8=",  # whitespace
        "aGVsbG8-",  # url-safe alphabet
        "QR==",  # non-canonical: trailing bits set (decodes to "A", re-encodes to "QQ==")
        "QUJ=",  # non-canonical: "AB" is "QUI="
        "/w==",  # valid base64 of b"\xff": not UTF-8
        "7aCA",  # UTF-8 encoded lone surrogate
        "aGVs?=bG8=",
    ],
)
def test_malformed_sentinel_decodes_to_none(payload: str) -> None:
    assert modern.decode_header_value(f"=?base64?{payload}?=") is None
