"""HMAC-signed pagination cursors."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from toolway.protocol.errors import INVALID_PARAMS, InvalidParams
from toolway.router.cursors import CursorCodec

METHODS = ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]


def _forge(codec: CursorCodec, payload: bytes) -> str:
    """A cursor whose body is `payload` (base64url, unpadded), signed with the codec's own key."""
    body = base64.urlsafe_b64encode(payload).rstrip(b"=")
    return (body + b"." + codec._sign(body)).decode("ascii")


def _signed_raw_body(codec: CursorCodec, body: bytes) -> str:
    return (body + b"." + codec._sign(body)).decode("ascii")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("offset", [0, 1, 200, 10_000, 2**40])
def test_round_trip(method: str, offset: int) -> None:
    codec = CursorCodec()
    cursor = codec.mint(method, offset)
    assert isinstance(cursor, str)
    assert codec.offset(method, cursor) == offset


def test_cursor_is_url_and_header_safe() -> None:
    cursor = CursorCodec("s").mint("resources/templates/list", 123456)
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert set(cursor) <= allowed
    assert cursor.count(".") == 1
    assert "=" not in cursor


def test_minting_is_deterministic_per_key() -> None:
    codec = CursorCodec("k")
    assert codec.mint("tools/list", 5) == codec.mint("tools/list", 5)
    assert codec.mint("tools/list", 5) != codec.mint("tools/list", 6)


def test_same_secret_interoperates_across_codecs() -> None:
    replica_a, replica_b = CursorCodec("shared-secret"), CursorCodec("shared-secret")
    cursor = replica_a.mint("tools/list", 400)
    assert replica_b.offset("tools/list", cursor) == 400
    assert replica_a.mint("prompts/list", 7) == replica_b.mint("prompts/list", 7)


def test_random_keys_do_not_interoperate() -> None:
    cursor = CursorCodec().mint("tools/list", 1)
    with pytest.raises(InvalidParams, match="not issued by this gateway"):
        CursorCodec().offset("tools/list", cursor)


def test_cursor_from_another_secret_is_refused() -> None:
    cursor = CursorCodec("one").mint("tools/list", 1)
    with pytest.raises(InvalidParams, match="not issued by this gateway") as info:
        CursorCodec("two").offset("tools/list", cursor)
    assert info.value.code == INVALID_PARAMS


@pytest.mark.parametrize("cursor_method", METHODS)
@pytest.mark.parametrize("used_for", METHODS)
def test_cursor_is_bound_to_its_method(cursor_method: str, used_for: str) -> None:
    codec = CursorCodec("k")
    cursor = codec.mint(cursor_method, 3)
    if cursor_method == used_for:
        assert codec.offset(used_for, cursor) == 3
    else:
        with pytest.raises(InvalidParams, match=f"not a {used_for} cursor"):
            codec.offset(used_for, cursor)


def _tamper_signature(cursor: str) -> str:
    body, sig = cursor.split(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    return f"{body}.{flipped}"


def _tamper_body(cursor: str) -> str:
    codec_body = base64.urlsafe_b64encode(orjson.dumps(["tools/list", 999])).rstrip(b"=").decode()
    return f"{codec_body}.{cursor.split('.')[1]}"


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_signature,
        _tamper_body,
        lambda c: c.split(".")[0],  # signature dropped
        lambda c: c.split(".")[0] + ".",  # empty signature
        lambda c: c + "A",  # signature extended
        lambda c: c[:-1],  # signature truncated
        lambda c: c + ".extra",
        lambda c: c.replace(".", ".="),
        lambda c: c.split(".")[0] + "==." + c.split(".")[1],  # padding added to the body
        lambda c: "." + c.split(".")[1],  # body dropped
        lambda c: c.upper(),
        lambda c: " " + c,
        lambda c: c + "\n",
    ],
)
def test_tampered_cursor_is_refused(tamper: Any) -> None:
    codec = CursorCodec("k")
    cursor = codec.mint("tools/list", 200)
    with pytest.raises(InvalidParams, match="Invalid cursor"):
        codec.offset("tools/list", tamper(cursor))


@pytest.mark.parametrize("cursor", [None, 1, 0, 1.5, True, [], {}, b"bytes", ["a.b"]])
def test_non_string_cursor_is_refused(cursor: Any) -> None:
    with pytest.raises(InvalidParams, match="must be a string"):
        CursorCodec("k").offset("tools/list", cursor)


@pytest.mark.parametrize(
    "cursor",
    ["", ".", "..", "garbage", "!!!.???", "a.b.c", "ünïcode.çursor", "\x00", "🎉", "a" * 10_000, "=.="],
)
def test_garbage_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidParams, match="Invalid cursor"):
        CursorCodec("k").offset("tools/list", cursor)


# White-box: the paths behind a valid signature, reachable only with the key
# (a leaked secret, or a bug in mint). They must still fail closed.


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"",
        b"\xff\xfe",
        b'["tools/list"]',
        b'["tools/list", 1, 2]',
        b'{"tools/list": 1}',
        b'"tools/list"',
        b"1",
        b'["prompts/list", 1]',
        b'[1, "tools/list"]',
    ],
)
def test_signed_but_malformed_payload_is_refused(payload: bytes) -> None:
    codec = CursorCodec("k")
    with pytest.raises(InvalidParams, match="Invalid cursor"):
        codec.offset("tools/list", _forge(codec, payload))


@pytest.mark.parametrize("body", [b"!!!", b"a", b"abcde", b"%%%%"])
def test_signed_garbage_base64_body_is_refused(body: bytes) -> None:
    codec = CursorCodec("k")
    with pytest.raises(InvalidParams, match="Invalid cursor"):
        codec.offset("tools/list", _signed_raw_body(codec, body))


@pytest.mark.parametrize("offset", [-1, -200, 1.5, 0.0, "10", None, [1], {"o": 1}])
def test_signed_bad_offset_is_refused(offset: Any) -> None:
    codec = CursorCodec("k")
    with pytest.raises(InvalidParams, match="Invalid cursor"):
        codec.offset("tools/list", _forge(codec, orjson.dumps(["tools/list", offset])))


def test_minted_negative_offset_is_refused() -> None:
    codec = CursorCodec("k")
    with pytest.raises(InvalidParams):
        codec.offset("tools/list", codec.mint("tools/list", -1))


def test_method_with_odd_characters_round_trips() -> None:
    codec = CursorCodec("k")
    method = 'weird "method"/ü.\n'
    assert codec.offset(method, codec.mint(method, 9)) == 9


def test_non_ascii_secret_works() -> None:
    codec = CursorCodec("sécret-🔑")
    assert CursorCodec("sécret-🔑").offset("tools/list", codec.mint("tools/list", 4)) == 4
