"""The internal call: both eras turned into one shape by the protocol layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolway.protocol.versions import Era


@dataclass(slots=True)
class Call:
    """One client request on its way through the gateway."""

    method: str
    params: dict[str, Any] | None
    era: Era
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    request_id: str  # the gateway's correlation id for logs, not the JSON-RPC id
    scope: str | None = None  # set on /servers/<name>/mcp: only that server, names unchanged
    principal: str | None = None
    transport: str = "streamable-http"
    # Filled in along the way, for logs and metrics.
    server: str | None = None
    target: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


class Filter(Protocol):
    """A stage of the chain: answer early (return or raise) or pass the call on."""

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]: ...
