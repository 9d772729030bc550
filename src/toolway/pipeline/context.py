"""The internal call: both eras turned into one shape by the protocol layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolway.auth.identity import Identity
from toolway.protocol.versions import Era


class Sink(Protocol):
    """The way back to the client while its call runs.

    `notify` queues a notification on this request's stream (progress, log
    messages) without waiting, so notifications keep their order. `request` asks
    the client something (sampling, elicitation, roots) and returns its result; it
    raises `MissingClientCapability` when the client did not declare what the
    method needs, and `UpstreamRpcError`-shaped errors when the client answers
    with an error.
    """

    def notify(self, method: str, params: dict[str, Any]) -> None: ...

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]: ...


class NullSink:
    """For calls nobody can be told about (the gateway's own catalog fetches)."""

    def notify(self, method: str, params: dict[str, Any]) -> None:
        return None

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        from toolway.protocol.errors import MissingClientCapability

        raise MissingClientCapability(f"no client is attached to relay {method!r} to")


NULL_SINK = NullSink()


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
    principal: str | None = None  # identity.subject when authenticated (audit, logs)
    identity: Identity | None = None  # set by authentication; None: the gateway runs without auth
    transport: str = "streamable-http"
    sink: Sink = NULL_SINK
    log_level: str | None = None  # the lowest level of log messages the client wants; None: none
    subscriber: str | None = None  # who resources/subscribe registers (a handshake session id)
    traceparent: str | None = None  # the caller's W3C `traceparent` HTTP header, if it sent one
    client: str | None = None  # where the request came from: the peer's host:port, or "stdio"
    # The client's HTTP request headers (lowercase names; None off HTTP). Only a server's
    # `forward_headers` ever reach an upstream, and never Authorization, Cookie or Mcp-Session-Id.
    # Consistent hashing may key on one (`balance.hash_key: header:<name>`).
    headers: Mapping[str, str] | None = field(default=None, repr=False)  # repr: they may hold a token
    # Filled in along the way, for logs and metrics.
    server: str | None = None
    target: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


class Filter(Protocol):
    """A stage of the chain: answer early (return or raise) or pass the call on."""

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]: ...
