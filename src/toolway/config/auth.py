"""The `auth:` section of the config file: who may call, proven how, and what they may see.

`auth: none` says, explicitly, that the gateway runs without authentication (required to
listen on a non-loopback address without it). Leaving `auth` out is the loopback default:
no authentication, as before. Otherwise `schemes` lists the enabled schemes, tried in order.
See docs/auth.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scheme = Literal["api_key", "jwt", "mtls"]
Algorithm = Literal["HS256", "RS256", "ES256"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeysConfig(_Model):
    # How often the running gateway re-reads the key table (creates and revokes take
    # effect within this); `POST /admin/keys/reload` re-reads at once.
    reload_seconds: float = Field(default=30.0, gt=0)
    # Also accept keys in this header (besides `Authorization: Bearer <key>`); None: only Bearer.
    header: str | None = "x-api-key"


class ClaimMapping(_Model):
    """Which token claims become the identity's fields."""

    subject: str = "sub"
    team: str | None = "team"
    roles: str | None = "roles"
    # A space-separated string (RFC 8693 `scope`) or a list (`scp`) of scopes.
    scopes: str = "scope"


class JwtConfig(_Model):
    issuer: str = Field(min_length=1)
    # Accepted `aud` values; unset: the gateway's canonical URL (`auth.oauth.resource`).
    audience: list[str] = []
    algorithms: list[Algorithm] = Field(default=["RS256", "ES256"], min_length=1)
    # Keys: a JWKS URL, OIDC discovery from the issuer, a PEM public key file, or an HS256 secret.
    jwks_url: str | None = None
    discovery: bool = False  # read jwks_uri from `<issuer>/.well-known/openid-configuration`
    public_key_file: str | None = None
    secret_env: str | None = None  # the environment variable holding the HS256 secret
    leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    required_claims: list[str] = ["exp", "sub"]
    claims: ClaimMapping = ClaimMapping()
    # JWKS: refetched after this long, or on an unknown `kid` (at most once per min_refresh_seconds).
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)
    jwks_max_keys: int = Field(default=32, gt=0)
    # Verified tokens kept (by their text) so a repeat costs a dict lookup, not a signature check.
    token_cache_size: int = Field(default=4096, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        sources = [s for s in (self.jwks_url, self.public_key_file, self.secret_env) if s] + (
            ["discovery"] if self.discovery else []
        )
        if len(sources) != 1:
            raise ValueError("set exactly one of jwks_url, discovery: true, public_key_file or secret_env")
        if self.secret_env and set(self.algorithms) != {"HS256"}:
            raise ValueError("secret_env is an HS256 key: set algorithms: [HS256]")
        if not self.secret_env and "HS256" in self.algorithms:
            raise ValueError("HS256 needs secret_env; public keys (jwks_url, public_key_file) are RS256/ES256")
        return self


class OAuthConfig(_Model):
    """Toolway as an OAuth 2.1 resource server (MCP authorization spec, RFC 9728)."""

    # The gateway's canonical URL: its MCP endpoint as agents reach it, e.g. https://gw.example.com/mcp.
    resource: str = Field(pattern=r"^https?://[^/]+")
    # Issuers agents get tokens from; unset: `auth.jwt.issuer`.
    authorization_servers: list[str] = []
    scopes_supported: list[str] = []
    resource_name: str = "Toolway"


class Grant(_Model):
    team: str | None = None
    roles: list[str] = []
    scopes: list[str] = []


class MtlsConfig(_Model):
    """TLS termination on the agent port, with client certificates verified against a CA bundle."""

    cert_file: str
    key_file: str
    ca_file: str  # the CAs client certificates must chain to
    # Where the subject comes from: the certificate's subject CN, or its first DNS/URI/email SAN.
    identity_from: Literal["cn", "san_dns", "san_uri", "san_email"] = "cn"
    # Certificate subject -> team, roles, scopes (a certificate carries none of its own).
    identities: dict[str, Grant] = {}


class TeamConfig(_Model):
    # Servers the team's members may see at all (names, or "*"); scopes narrow further.
    servers: list[str] = ["*"]


class StdioIdentity(_Model):
    """The local operator's identity for `toolway stdio` (whoever launched it)."""

    subject: str = "stdio-operator"
    team: str | None = None
    roles: list[str] = []
    scopes: list[str] = ["*"]


class AuthConfig(_Model):
    # Tried in order. Empty only as written `auth: none`: no authentication, on purpose.
    schemes: list[Scheme]
    api_keys: ApiKeysConfig = ApiKeysConfig()
    jwt: JwtConfig | None = None
    oauth: OAuthConfig | None = None
    mtls: MtlsConfig | None = None
    # Per-team boundaries; when any are set, an identity sees only its own team's servers.
    teams: dict[str, TeamConfig] = {}
    stdio: StdioIdentity = StdioIdentity()

    @model_validator(mode="before")
    @classmethod
    def _none(cls, data: Any) -> Any:
        if data == "none":
            return {"schemes": []}
        if isinstance(data, dict) and data.get("schemes") == []:
            raise ValueError("schemes is empty: list at least one scheme, or write `auth: none`")
        return data

    @property
    def enabled(self) -> bool:
        """False for `auth: none`."""
        return bool(self.schemes)

    @model_validator(mode="after")
    def _sections(self) -> AuthConfig:
        if len(set(self.schemes)) != len(self.schemes):
            raise ValueError("schemes lists a scheme more than once")
        if "jwt" in self.schemes and self.jwt is None:
            raise ValueError("scheme jwt needs an auth.jwt section")
        if "mtls" in self.schemes and self.mtls is None:
            raise ValueError("scheme mtls needs an auth.mtls section")
        if self.jwt is not None and not self.jwt.audience and self.oauth is None:
            raise ValueError("auth.jwt needs an audience: set jwt.audience or oauth.resource (the gateway's URL)")
        return self


class UpstreamTls(_Model):
    """TLS toward one upstream: a client certificate for servers that require one (mTLS), and
    the CAs its certificate must chain to (unset: the system's)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> UpstreamTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self
