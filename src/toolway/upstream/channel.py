"""The seam between an upstream's transport and the MCP logic above it."""

from __future__ import annotations

from typing import Any, Protocol


class ChannelClosed(Exception):
    """The transport is gone (process exited, connection refused or lost)."""


class SessionExpired(Exception):
    """A handshake-era HTTP upstream no longer knows our session (HTTP 404)."""


class Channel(Protocol):
    """Carries JSON-RPC messages to one upstream server and brings the answers back.

    `roundtrip` returns the response message (with `result` or `error`) for the
    request's id; `headers` are per-message transport headers (HTTP only).
    """

    session_id: str | None

    async def open(self) -> None: ...

    async def roundtrip(self, message: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]: ...

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...
