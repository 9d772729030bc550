"""Small raw-ASGI helpers: read a bounded body, send a complete response."""

from __future__ import annotations

from typing import Any

import orjson

Scope = dict[str, Any]
ASGIReceive = Any
ASGISend = Any


class BodyTooLarge(Exception):
    pass


async def read_body(receive: ASGIReceive, limit: int) -> bytes:
    """The whole request body, or BodyTooLarge once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(
    send: ASGISend,
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes | None = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    if content_type is not None and body:
        raw.append((b"content-type", content_type))
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: ASGISend, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, status, orjson.dumps(obj), headers=headers)


def sse_frame(body: bytes) -> bytes:
    """One JSON-RPC message as one SSE `message` event."""
    return b"event: message\ndata: " + body + b"\n\n"
