"""The seam between an upstream's transport and the MCP logic above it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

OnMessage = Callable[[dict[str, Any]], None]
# The gateway's own credentials for one server, asked for on every HTTP request (tokens expire).
AuthHeaders = Callable[[], Awaitable[Mapping[str, str]]]


async def no_auth() -> Mapping[str, str]:
    return {}


class ChannelClosed(Exception):
    """The transport is gone (process exited, connection refused or lost)."""


class SessionExpired(Exception):
    """A handshake-era HTTP upstream no longer knows our session (HTTP 404)."""


class Channel(Protocol):
    """Carries JSON-RPC messages to one upstream server and brings the answers back.

    `roundtrip` returns the response message (with `result` or `error`) for the
    request's id. Messages the server sends on that request's own stream before the
    response go to `on_message`, in order; messages it sends outside any request go
    to the channel's session-level callback. `headers` are per-message transport
    headers (HTTP only).
    """

    session_id: str | None
    attributes_messages: bool  # True when messages arrive on the request's own stream (HTTP)

    async def open(self) -> None: ...

    async def roundtrip(
        self, message: dict[str, Any], headers: dict[str, str], on_message: OnMessage | None = None
    ) -> dict[str, Any]: ...

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...
