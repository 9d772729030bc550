"""The declarative config file, as pydantic models.

Unknown keys are errors everywhere (``extra="forbid"``), so a typo never silently
turns into a default. Models are frozen: the loaded config is the runtime form the
gateway reads; nothing mutates it after start-up.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from toolway.config.auth import AuthConfig, UpstreamTls
from toolway.config.policy import EgressConfig, PolicyConfig, UpstreamCredentials, check_forward_headers
from toolway.config.routing import Endpoint, RoutingFields, check_endpoints
from toolway.config.state import StateConfig

SERVER_NAME_PATTERN = r"^[a-z0-9_-]+$"
# The separator between a server's namespace and a tool or prompt name. Server names
# may contain single underscores; a double underscore would make names ambiguous.
NAMESPACE_SEPARATOR = "__"

UpstreamEra = Literal["auto", "2026-07-28", "handshake"]
HttpTransport = Literal["streamable-http", "sse", "websocket", "auto"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class Admin(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    enabled: bool = True
    # /readyz answers 503 until at least this many servers are connected.
    min_healthy_upstreams: int = Field(default=0, ge=0)
    # The environment variable holding the admin API's bearer token. Set: every /admin/* and
    # /v0.1/* request on the admin port must send `Authorization: Bearer <token>` (/healthz,
    # /readyz and /metrics stay open for probes and scrapers). Required off loopback.
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Timeouts(_Model):
    """Per-phase upstream deadlines in seconds (connect covers the probe/handshake)."""

    connect: float = Field(default=10.0, gt=0)
    call: float = Field(default=30.0, gt=0)  # the total deadline of a call, retries included
    # No message about a call (progress, log, answer) within this fails it early. None: off.
    first_byte: float | None = Field(default=None, gt=0)
    # Each progress notification renews the `call` deadline, up to this long in total. None: off.
    progress_max: float | None = Field(default=None, gt=0)


class ToolTimeouts(_Model):
    """One tool's deadlines, over its server's `timeouts` (unset fields keep the server's)."""

    call: float | None = Field(default=None, gt=0)
    first_byte: float | None = Field(default=None, gt=0)
    progress_max: float | None = Field(default=None, gt=0)


class Reconnect(_Model):
    """Back-off between attempts to reach a server that is down: doubles up to `max`."""

    initial: float = Field(default=0.5, gt=0)
    max: float = Field(default=30.0, gt=0)


class Health(_Model):
    """Health probes of one server (docs/registry.md): MCP `ping` or `server/discover`, plus
    process liveness for stdio. `grace_seconds` after turning unhealthy its tools leave the lists."""

    interval_seconds: float = Field(default=10.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    unhealthy_after: int = Field(default=3, ge=1)  # consecutive failed probes
    healthy_after: int = Field(default=1, ge=1)  # consecutive good probes (or heartbeats)
    grace_seconds: float = Field(default=0.0, ge=0)


PinningMode = Literal["enforce", "warn", "off"]


class _ServerBase(RoutingFields):  # balance, affinity, breaker, retries, ... (config/routing.py)
    name: str = Field(pattern=SERVER_NAME_PATTERN, max_length=64)
    enabled: bool = True
    timeouts: Timeouts = Timeouts()
    # Per tool (its upstream name, without the server prefix): a slow report tool gets longer.
    tool_timeouts: dict[str, ToolTimeouts] = {}
    reconnect: Reconnect = Reconnect()
    # MCP ping to a handshake-era server after this many quiet seconds (keeps idle sessions alive).
    keepalive_seconds: float = Field(default=30.0, gt=0)
    # Which era to speak upstream: probe `server/discover` and fall back to
    # `initialize` ("auto"), or pin one.
    era: UpstreamEra = "auto"
    # Log this server's call arguments and results in the access log (secrets redacted).
    # Off by default: payloads may hold personal data.
    log_payloads: bool = False
    # The registry (docs/registry.md): what discovery shows, health, pinned tool definitions.
    description: str | None = None
    version: str | None = None  # as registered; what the server reports is recorded apart
    tags: list[str] = []
    owner: str | None = None  # the team that owns the server
    health: Health = Health()
    pinning: PinningMode = "enforce"
    refresh_seconds: float | None = Field(default=None, gt=0)  # re-list the catalog; unset: `registry:`'s

    @field_validator("name")
    @classmethod
    def _no_double_underscore(cls, value: str) -> str:
        # `<server>__<tool>` must split back at its first separator: a server name
        # holding "__", or ending in "_" ("a_" + "__" + "b" = "a___b"), would not.
        if NAMESPACE_SEPARATOR in value or value.endswith("_"):
            raise ValueError(
                f"must not contain {NAMESPACE_SEPARATOR!r} or end with '_': {NAMESPACE_SEPARATOR!r} separates"
                " server and tool names"
            )
        return value


class StdioServerConfig(_ServerBase):
    transport: Literal["stdio"]
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = {}
    cwd: str | None = None
    replicas: int = Field(default=1, ge=1, le=64)  # processes started, balanced as one server


class HttpServerConfig(_ServerBase):
    # "sse" is the 2024-11-05 HTTP+SSE transport (GET stream + POST endpoint); "auto" tries
    # Streamable HTTP and falls back to it when the server answers like an older one.
    transport: HttpTransport
    url: str = ""  # one replica; or `endpoints`, several
    endpoints: list[Endpoint] | None = None
    headers: dict[str, str] = {}
    tls: UpstreamTls | None = None  # a client certificate (and CA) for upstreams that require mTLS
    # What the gateway presents upstream (static secret headers, OAuth2 client credentials), and
    # which of the client's own request headers pass through (never Authorization/Cookie/session).
    credentials: UpstreamCredentials | None = None
    forward_headers: list[str] = []

    @field_validator("forward_headers")
    @classmethod
    def _forwardable(cls, value: list[str]) -> list[str]:
        return check_forward_headers(value)

    @model_validator(mode="after")
    def _one_of_url_or_endpoints(self) -> HttpServerConfig:
        check_endpoints(self.url, self.endpoints)
        return self

    def urls(self) -> list[str]:
        """Every replica's URL: `url`, or each of `endpoints`."""
        return [self.url] if self.endpoints is None else [e.url for e in self.endpoints]

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str, info: ValidationInfo) -> str:
        # `transport` is declared first, so it is validated (and in info.data) already.
        if info.data.get("transport") == "websocket":
            if not value.startswith(("ws://", "wss://", "http://", "https://")):
                raise ValueError("must be a ws://, wss://, http:// or https:// URL")
        elif not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


ServerConfig = Annotated[StdioServerConfig | HttpServerConfig, Field(discriminator="transport")]


class Limits(_Model):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Handshake-era sessions kept at once, and how long an idle one lives.
    max_sessions: int = Field(default=10_000, gt=0)
    session_idle_seconds: float = Field(default=3600.0, gt=0)
    # Requests one handshake-era session may have in flight (each holds a stream open).
    max_streams_per_session: int = Field(default=64, gt=0)
    # Items per page of the gateway's merged lists.
    page_size: int = Field(default=200, gt=0, le=10_000)


class Security(_Model):
    """DNS-rebinding protection: which Host and Origin values the agent port accepts.

    Entries are host names without ports (``localhost``) or ``*`` for any.
    """

    allowed_hosts: list[str] = ["localhost", "127.0.0.1", "::1"]
    allowed_origins: list[str] = ["localhost", "127.0.0.1", "::1"]


class Logging(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Streams(_Model):
    """Long-lived SSE streams: keep-alive comments so idle streams survive proxies' timeouts."""

    keepalive_seconds: float = Field(default=15.0, gt=0)
    retry_ms: int = Field(default=1000, ge=0)
    # Messages waiting for a slow client on one connection or stream; past it, the client is
    # disconnected with a logged reason rather than letting the gateway's memory grow.
    max_queued_messages: int = Field(default=1024, gt=0)
    # How long a stateless-era call waits, parked, for the client's input_required retry.
    input_deadline_seconds: float = Field(default=300.0, gt=0)


class Tracing(_Model):
    """OpenTelemetry traces. `none` (the default) creates no spans at all."""

    exporter: Literal["none", "console", "otlp-http"] = "none"
    # The OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); unset: the exporter's
    # default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces).
    endpoint: str | None = None
    headers: dict[str, str] = {}  # sent with every export (a collector's API key)
    # Share of new traces recorded; a caller's sampled flag in `traceparent` is followed.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = "toolway"


class Audit(_Model):
    """The tamper-evident audit log of tool calls, prompt gets and resource reads, in the store."""

    enabled: bool = True
    batch_size: int = Field(default=500, gt=0)  # rows per write
    flush_seconds: float = Field(default=1.0, gt=0)  # how long a record may wait to be written
    # Records waiting for the store; past it new records are counted, and the count is written
    # as an `audit/dropped` row, rather than letting the gateway's memory grow.
    max_queued: int = Field(default=100_000, gt=0)


class Registry(_Model):
    """Run-time registration (docs/registry.md)."""

    # How long removing (or disabling, or updating) a server waits for its calls in flight.
    drain_seconds: float = Field(default=10.0, ge=0)
    # Re-list every server's catalog this often, besides on list_changed; unset: never.
    refresh_seconds: float | None = Field(default=None, gt=0)
    # The agent-facing base URL the discovery API names (e.g. behind a proxy); unset: the request's Host.
    public_url: str | None = None
    # The namespace of server names in the discovery API (`<namespace>/<server>`, as server.json wants).
    namespace: str = Field(default="local.toolway", pattern=r"^[a-zA-Z0-9.-]+$")


class Shutdown(_Model):
    drain_seconds: float = Field(default=10.0, ge=0)


class GatewayConfig(_Model):
    listen: Listen = Listen()
    admin: Admin = Admin()
    store: str = "sqlite:///./toolway.db"
    servers: list[ServerConfig] = []
    limits: Limits = Limits()
    security: Security = Security()
    logging: Logging = Logging()
    tracing: Tracing = Tracing()
    audit: Audit = Audit()
    shutdown: Shutdown = Shutdown()
    registry: Registry = Registry()
    streams: Streams = Streams()
    # Authentication and scopes (config/auth.py, docs/auth.md). Unset: none, loopback only;
    # "none": none, said explicitly (needed to listen elsewhere without authentication).
    auth: AuthConfig | None = None
    policy: PolicyConfig = PolicyConfig()  # OPA/Rego and built-in rules (docs/policy.md)
    egress: EgressConfig = EgressConfig()  # which upstream addresses may be reached
    state: StateConfig = StateConfig()  # what replicas share: memory (one process) or Redis (docs/state.md)
    # Key for signing pagination cursors. Unset: a random key per process.
    cursor_secret: str | None = Field(default=None, min_length=16)

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "sqlite+aiosqlite:///", "postgresql://", "postgresql+")):
            raise ValueError("must be a sqlite:///PATH or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        seen: set[str] = set()
        for server in self.servers:
            if server.name in seen:
                raise ValueError(f"server name {server.name!r} is used more than once")
            seen.add(server.name)
        return self

    def server(self, name: str) -> StdioServerConfig | HttpServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)
