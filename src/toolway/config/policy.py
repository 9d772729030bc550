"""Config models for the policy engine (`policy:`), egress control (`egress:`) and upstream
credentials (a server's `credentials:` and `forward_headers:`).

They live apart from `config/model.py` so that file stays the map of the whole config;
`GatewayConfig` and `HttpServerConfig` only name them. How each is used is in
`docs/policy.md`.
"""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

PolicyMode = Literal["enforce", "shadow", "off"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
_PACKAGE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# Headers of the client's request that `forward_headers` may never name: credentials and the
# client's own session (the MCP spec forbids token passthrough), and what the gateway sets itself.
NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "upgrade",
        "last-event-id",
        "traceparent",
        "tracestate",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(_Model):
    """One built-in rule: which calls it covers (`tools`, `prompts`), who (`subjects`, `teams`,
    `roles`; none listed: anyone) and when (`hours`, `days`; none: any time) they are allowed."""

    tools: list[str] = []  # `server/tool` globs: "web/*", "files/read_*", "*"
    prompts: list[str] = []  # `server/prompt` globs
    subjects: list[str] = []
    teams: list[str] = []
    roles: list[str] = []
    hours: str | None = None  # "09:00-17:00" in policy.timezone; "22:00-06:00" spans midnight
    days: list[Weekday] = []

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            if not _HOURS.match(value):
                raise ValueError("must be a window like '09:00-17:00' (24-hour HH:MM-HH:MM)")
            if value[:5] == value[6:]:
                raise ValueError("an empty window: start and end are the same time")
        return value

    @field_validator("tools", "prompts")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if pattern != "*" and pattern.count("/") != 1:
                raise ValueError(f"{pattern!r} must be `server/name` (globs allowed, e.g. 'web/*') or '*'")
        return value

    @model_validator(mode="after")
    def _covers_something(self) -> RuleConfig:
        if not self.tools and not self.prompts:
            raise ValueError("a rule must name the tools or prompts it covers (tools: ['web/*'])")
        return self


class PolicyEntry(_Model):
    """A policy: a Rego `file`, or built-in `rules` compiled to Rego; either way one decision path."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    mode: PolicyMode = "enforce"
    file: str | None = None
    package: str = Field(default="toolway.policy", pattern=_PACKAGE)  # the Rego file's package
    rule: str = Field(default="allow", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the decision rule in it
    rules: list[RuleConfig] | None = None
    default: Literal["allow", "deny"] = "allow"  # rules: the decision for calls no rule covers

    @model_validator(mode="after")
    def _one_source(self) -> PolicyEntry:
        if (self.file is None) == (self.rules is None):
            raise ValueError("give a policy either `file:` (Rego) or `rules:` (built-in rules), not both or neither")
        if self.rules is not None and not self.rules:
            raise ValueError("`rules:` is empty")
        return self


class PolicyConfig(_Model):
    policies: list[PolicyEntry] = []
    timezone: str = "UTC"  # the zone of input.time's hour, minute and weekday
    # How often policy files are checked for changes (0: never; a restart picks them up).
    reload_seconds: float = Field(default=2.0, ge=0)
    decision_log: str | None = None  # a JSONL file every decision is appended to
    # Which decisions also go to the `toolway.decisions` logger (stderr).
    log_decisions: Literal["all", "denials", "none"] = "all"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone (e.g. 'UTC', 'Europe/Paris')") from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> PolicyConfig:
        names = [p.name for p in self.policies]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"policy name {name!r} is used more than once")
        return self


class EgressConfig(_Model):
    """Which upstream addresses the gateway may reach (checked at start-up and on every connect)."""

    # Host names, `*.example.com` patterns, IP addresses or CIDRs. Empty: any host that the
    # address rules below admit; otherwise an upstream must match one entry.
    allow: list[str] = []
    allow_private: bool = True  # RFC 1918, RFC 6598 shared space, IPv6 unique-local
    allow_loopback: bool = True  # 127.0.0.0/8 and ::1


class Secret(_Model):
    """A secret value: inline (`${VAR}` from the environment works) or read from a file."""

    value: SecretStr | None = None
    value_file: str | None = None  # read at start-up; trailing newlines are stripped
    prefix: str = ""  # put before the value, e.g. "Bearer "

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.value is None) == (self.value_file is None):
            raise ValueError("give exactly one of `value` and `value_file`")
        return self


class OAuth2ClientCredentials(_Model):
    """An OAuth 2.0 client-credentials grant (RFC 6749 §4.4) whose token the gateway sends upstream."""

    token_url: str
    client_id: str
    client_secret: Secret
    scope: str | None = None
    audience: str | None = None
    resource: str | None = None  # RFC 8707 resource indicator
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    refresh_before_seconds: float = Field(default=30.0, ge=0)  # renew this long before expiry
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class UpstreamCredentials(_Model):
    """What the gateway presents to one upstream: never the client's own token."""

    headers: dict[str, Secret] = {}
    oauth2: OAuth2ClientCredentials | None = None

    @field_validator("headers", mode="before")
    @classmethod
    def _plain_strings(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"value": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _no_two_authorizations(self) -> UpstreamCredentials:
        if self.oauth2 is not None and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("`oauth2` sets the Authorization header; do not also list it under `headers`")
        return self


def check_forward_headers(names: list[str]) -> list[str]:
    """Validate a server's `forward_headers`; return them lowercased.

    Raises:
        ValueError: a name the gateway never forwards (credentials, session, its own headers).
    """
    lowered = [name.strip().lower() for name in names]
    for name in lowered:
        if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        if name in NEVER_FORWARDED or name.startswith("mcp-param-"):
            raise ValueError(
                f"{name!r} is never forwarded to an upstream: the client's credentials and session stay at the"
                " gateway (use `credentials:` to give the upstream its own)"
            )
    return lowered
