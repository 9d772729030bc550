"""Opaque pagination cursors minted by the gateway.

A cursor is an HMAC-signed (method, offset) pair: a client cannot forge one, nor
use a `tools/list` cursor for `prompts/list`. The key is per process unless
`cursor_secret` is configured, which replicas behind one load balancer need.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import orjson

from toolway.protocol.errors import InvalidParams


class CursorCodec:
    def __init__(self, secret: str | None = None) -> None:
        self._key = secret.encode() if secret else secrets.token_bytes(32)

    def mint(self, method: str, offset: int) -> str:
        body = base64.urlsafe_b64encode(orjson.dumps([method, offset])).rstrip(b"=")
        return (body + b"." + self._sign(body)).decode("ascii")

    def offset(self, method: str, cursor: object) -> int:
        """The offset a cursor points at.

        Raises:
            InvalidParams: the cursor was not minted here for this method.
        """
        if not isinstance(cursor, str):
            raise InvalidParams("Invalid cursor: must be a string")
        body, _, sig = cursor.encode("ascii", "replace").partition(b".")
        if not hmac.compare_digest(sig, self._sign(body)):
            raise InvalidParams("Invalid cursor: not issued by this gateway")
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidParams("Invalid cursor") from None
        if not (isinstance(decoded, list) and len(decoded) == 2 and decoded[0] == method):
            raise InvalidParams(f"Invalid cursor: not a {method} cursor")
        offset = decoded[1]
        if not isinstance(offset, int) or offset < 0:
            raise InvalidParams("Invalid cursor")
        return offset

    def _sign(self, body: bytes) -> bytes:
        digest = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=")
