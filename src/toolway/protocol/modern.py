"""The 2026-07-28 request ladder: `_meta` envelope, routing headers, version.

Rungs in the order of the spec's transport rules (and the official SDKs): the
`_meta` envelope, duplicate routing headers, headers against the body, then the
version. A client that disagrees with itself is told so before it is told its
version is unsupported.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from toolway.protocol.errors import HeaderMismatch, InvalidParams, UnsupportedProtocolVersion
from toolway.protocol.versions import (
    H_METHOD,
    H_NAME,
    H_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    NAME_BEARING_METHODS,
)

_ROUTING_HEADERS = frozenset({H_PROTOCOL_VERSION, H_METHOD, H_NAME})
_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a stateless-era request says about its client."""

    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None


def duplicated_routing_header(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Name of a routing header sent more than once (first- and last-copy readers would disagree)."""
    seen: set[bytes] = set()
    for name, _ in raw_headers:
        if name in _ROUTING_BYTES:
            if name in seen:
                return name.decode()
            seen.add(name)
    return None


_ROUTING_BYTES = frozenset(h.encode() for h in _ROUTING_HEADERS)


def decode_header_value(value: str | None) -> str | None:
    """Undo the `=?base64?...?=` wrapping of a header value; a malformed one decodes to None."""
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def encode_header_value(value: str) -> str:
    """Wrap a value that would not survive as an HTTP header value in the base64 sentinel."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _B64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def check_request(method: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> Envelope:
    """Run the ladder over one stateless-era request.

    `headers` are the lowercase HTTP headers, or None on transports without them.

    Raises:
        InvalidParams: `_meta` is missing or lacks the version or capabilities.
        HeaderMismatch: a routing header disagrees with the body.
        UnsupportedProtocolVersion: the version is not one Toolway serves; `data`
            lists the supported ones.
    """
    meta = params.get("_meta") if params is not None else None
    if not isinstance(meta, Mapping):
        raise InvalidParams(
            f"params._meta must be an object carrying {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}"
        )
    missing = [k for k in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if k not in meta]
    if missing:
        raise InvalidParams(f"params._meta is missing the required key(s): {', '.join(missing)}")
    version = meta[META_PROTOCOL_VERSION]
    if headers is not None:
        if headers.get(H_PROTOCOL_VERSION) != version:
            raise HeaderMismatch("MCP-Protocol-Version header does not match params._meta's protocol version")
        if headers.get(H_METHOD) != method:
            raise HeaderMismatch("Mcp-Method header does not match the request body's method")
        name_key = NAME_BEARING_METHODS.get(method)
        if name_key is not None and params is not None:
            body_value = params.get(name_key)
            if body_value is not None and decode_header_value(headers.get(H_NAME)) != body_value:
                raise HeaderMismatch(f"Mcp-Name header does not match the request body's {name_key!r}")
    if not isinstance(version, str):
        raise InvalidParams("the protocol version in params._meta must be a string")
    if version not in MODERN_VERSIONS:
        raise UnsupportedProtocolVersion(
            "Unsupported protocol version",
            data={"supported": list(MODERN_VERSIONS), "requested": version},
        )
    capabilities = meta[META_CLIENT_CAPABILITIES]
    if not isinstance(capabilities, dict):
        raise InvalidParams("the client capabilities in params._meta must be an object")
    info = meta.get(META_CLIENT_INFO)
    return Envelope(version, capabilities, info if isinstance(info, dict) else None)
