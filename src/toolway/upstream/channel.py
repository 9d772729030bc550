"""The seam between an upstream's transport and the MCP logic above it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

OnMessage = Callable[[dict[str, Any]], None]


class UpstreamAuth(Protocol):
    """The gateway's own credentials for one server (`upstream/credentials.py`).

    `headers` is asked for on every HTTP request, since tokens expire; `rejected` is told when
    the server answered HTTP 401, so a cached token is dropped and the next request gets a new one.
    """

    async def headers(self) -> Mapping[str, str]: ...

    def rejected(self) -> None: ...


class NoAuth:
    """No credentials of the gateway's own for this server."""

    async def headers(self) -> Mapping[str, str]:
        return {}

    def rejected(self) -> None:
        return None


NO_AUTH = NoAuth()


class ChannelClosed(Exception):
    """The transport is gone (process exited, connection refused or lost).

    `delivered` is False only when the request provably never left the gateway
    (connection refused, nothing written): only then may any call be retried elsewhere.
    """

    def __init__(self, message: str, *, delivered: bool = True) -> None:
        super().__init__(message)
        self.delivered = delivered


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
