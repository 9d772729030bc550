"""Config of routing and connection management: replicas, balancing, resilience, pool limits.

Small frozen value objects, validated once when the config loads; the router and the
pools read them as they are (docs/routing.md describes every key).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Strategy = Literal["least_inflight", "round_robin", "weighted", "random_two_choices", "consistent_hash"]
_HASH_KEY = re.compile(r"^(principal|header:[A-Za-z0-9-]+|argument:[A-Za-z0-9_.-]+)$")
_ID = r"^[A-Za-z0-9_.-]+$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Model):
    """One replica of an HTTP server: where it is, its share under `weighted`, its zone and version."""

    url: str
    weight: int = Field(default=1, ge=0, le=10_000)
    zone: str | None = None
    version: str = Field(default="v1", pattern=_ID, max_length=64)
    id: str | None = Field(default=None, pattern=_ID, max_length=64)  # default: its position, "0", "1", ...

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http://, https://, ws:// or wss:// URL")
        return value


class Balance(_Model):
    """How a call picks one of a server's replicas.

    `hash_key` (for `consistent_hash`): `principal`, `header:<name>` or `argument:<name>`.
    """

    strategy: Strategy = "least_inflight"
    hash_key: str = "principal"

    @field_validator("hash_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _HASH_KEY.fullmatch(value):
            raise ValueError("must be 'principal', 'header:<name>' or 'argument:<name>'")
        return value.lower() if value.startswith("header:") else value


class OutlierDetection(_Model):
    """Eject a replica that keeps failing: no new calls until its ejection ends.

    Ejection lasts `base_ejection_seconds` times the number of times it was ejected
    before (capped at `max_ejection_seconds`); at most `max_ejected_percent` of a
    pool's replicas are ejected at once, so a pool never ejects itself empty.
    """

    enabled: bool = True
    consecutive_failures: int = Field(default=5, ge=1)
    # Eject when at least `error_rate` of the last `window` calls failed (once `window` calls were seen).
    error_rate: float | None = Field(default=None, gt=0, le=1)
    window: int = Field(default=20, ge=1, le=10_000)
    base_ejection_seconds: float = Field(default=30.0, gt=0)
    max_ejection_seconds: float = Field(default=300.0, gt=0)
    max_ejected_percent: int = Field(default=50, ge=0, le=100)


class Breaker(_Model):
    """A circuit breaker per replica: closed -> open after `failure_threshold` consecutive
    failures -> half-open after `open_seconds` (`half_open_calls` trial calls) -> closed
    after `success_threshold` successes, or open again on a failure."""

    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=10.0, gt=0)
    half_open_calls: int = Field(default=1, ge=1)
    success_threshold: int = Field(default=1, ge=1)


class Retries(_Model):
    """Retries, only where safe: the request never reached a server, or the tool is
    annotated `idempotentHint`/`readOnlyHint`, or named in `retryable_tools`.

    `attempts` counts every try, the first included; all tries together stay within
    the call's `timeouts.call` deadline (the per-call budget).
    """

    attempts: int = Field(default=3, ge=1, le=10)
    backoff_initial: float = Field(default=0.05, ge=0)
    backoff_max: float = Field(default=1.0, ge=0)
    retryable_tools: list[str] = []  # upstream tool names (without the server prefix)


class PoolLimits(_Model):
    """Each replica's pool of upstream sessions (sessions/session_pool.py, docs/routing.md).

    Every count includes the gateway's own session (its catalog, subscriptions and
    keep-alive), which serves calls too where callers may share it.
    """

    # The most upstream sessions (for stdio: processes) one replica opens. Unset: 1 where
    # callers share sessions (one session, as before pools), 64 where each principal has its own.
    max_connections: int | None = Field(default=None, ge=1, le=10_000)
    # Calls in flight on one session; a call that finds its sessions full opens another (up to
    # `max_connections`), else waits (`max_waiting`) or is refused. Unset: no limit.
    max_inflight: int | None = Field(default=None, ge=1)
    # Calls that may wait, in FIFO order and within their deadline, for a slot on one replica.
    # 0: a full replica refuses at once (retryable `no_healthy_replica`).
    max_waiting: int = Field(default=0, ge=0, le=100_000)
    # The longest a call waits for a slot (never past its deadline). Unset: its deadline.
    max_wait_seconds: float | None = Field(default=None, gt=0)
    # Sessions opened when the server starts (at start-up or registration) and never closed for
    # idleness: no cold start for the first calls.
    warm: int = Field(default=1, ge=1, le=10_000)
    # A session beyond `warm` with no call for this long is closed.
    idle_seconds: float = Field(default=300.0, gt=0)
    # Ping quiet handshake-era pool sessions every `keepalive_seconds`, as the gateway's own.
    keepalive: bool = True

    @model_validator(mode="after")
    def _warm_within_limit(self) -> PoolLimits:
        if self.max_connections is not None and self.warm > self.max_connections:
            raise ValueError(f"warm ({self.warm}) must not exceed max_connections ({self.max_connections})")
        return self


# Who may use an upstream session: `shared` (any caller), `per_principal` (only the principal it
# was opened for; stdio: its own process), or `auto` (per_principal for stdio and handshake-era
# upstreams, whose sessions hold state; shared for stateless-era HTTP upstreams).
Sharing = Literal["auto", "shared", "per_principal"]


class RoutingFields(_Model):
    """The routing keys every server accepts (mixed into each server's config model)."""

    balance: Balance = Balance()
    # Pin a client's handshake-era session to one replica even when the server speaks the
    # stateless era (handshake-era servers are always pinned, since their session holds state).
    affinity: bool = False
    outlier_detection: OutlierDetection = OutlierDetection()
    breaker: Breaker = Breaker()
    retries: Retries = Retries()
    pool: PoolLimits = PoolLimits()
    sharing: Sharing = "auto"


def check_endpoints(url: str, endpoints: list[Endpoint] | None) -> None:
    """Exactly one of `url` and `endpoints`; endpoint ids unique. Raises ValueError."""
    if bool(url) == (endpoints is not None):
        raise ValueError("give either 'url' or 'endpoints', not both and not neither")
    if endpoints is not None:
        if not endpoints:
            raise ValueError("'endpoints' must list at least one endpoint")
        ids = [e.id or str(i) for i, e in enumerate(endpoints)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"endpoint ids must be unique: {ids}")


__all__ = [
    "Balance",
    "Breaker",
    "Endpoint",
    "OutlierDetection",
    "PoolLimits",
    "Retries",
    "RoutingFields",
    "Sharing",
    "Strategy",
    "check_endpoints",
]
