"""What the gateway presents to an upstream: its own credentials, never the client's.

Per server (`credentials:` in its config):
- static headers whose values are inline (`${VAR}` from the environment) or read from a
  secret file at start-up (`value_file:`);
- an OAuth 2.0 client-credentials token (RFC 6749 §4.4), fetched from the token endpoint,
  cached until `refresh_before_seconds` before it expires, and fetched once however many
  calls need it at the same moment. A failed fetch is remembered for a second, so a burst
  of calls does not hammer a failing token endpoint; each such call fails with
  `UpstreamCredentialsFailed` naming the server and the endpoint's answer.

The client's own `Authorization`, `Cookie` and `Mcp-Session-Id` never reach an upstream
(the MCP authorization spec forbids token passthrough): the gateway's upstream sessions are
its own, and `forward_headers` (see `forwarded`) refuses those names in config.
Secret values are never logged and never appear in error messages.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote_plus

import aiohttp
import orjson
import structlog

from toolway.clock import Clock
from toolway.config.loader import ConfigError
from toolway.config.policy import OAuth2ClientCredentials, Secret, UpstreamCredentials
from toolway.protocol.errors import UpstreamCredentialsFailed

log = structlog.get_logger("toolway.upstream.credentials")

# How long a failed token fetch is remembered: calls meanwhile fail at once with its cause.
FAILURE_HOLD_SECONDS = 1.0
# Used when a token response has no `expires_in` (RFC 6749 §5.1 makes it optional).
DEFAULT_TOKEN_SECONDS = 300.0
_MAX_TOKEN_RESPONSE = 64 * 1024


class CredentialsError(ConfigError):
    """A server's credentials cannot be used at start-up (e.g. a secret file is missing)."""


def read_secret(secret: Secret, where: str) -> str:
    """The secret's value (with its prefix). Raises: CredentialsError naming `where`, never the value."""
    if secret.value is not None:
        return secret.prefix + secret.value.get_secret_value()
    assert secret.value_file is not None
    try:
        text = Path(secret.value_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialsError(f"{where}.value_file: cannot read {secret.value_file}: {reason}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise CredentialsError(f"{where}.value_file: {secret.value_file} is empty")
    return secret.prefix + value


class ClientCredentialsToken:
    """One OAuth2 client-credentials token, cached and refreshed single-flight."""

    def __init__(
        self,
        server: str,
        config: OAuth2ClientCredentials,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
    ) -> None:
        """Raises: CredentialsError when the client secret cannot be read."""
        self._server = server
        self._config = config
        self._secret = read_secret(config.client_secret, f"servers.{server}.credentials.oauth2.client_secret")
        self._http = http
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._failure: UpstreamCredentialsFailed | None = None
        self._failed_at = 0.0
        self.fetches = 0  # token requests made (diagnostics, tests)

    async def token(self) -> str:
        """A valid access token. Raises: UpstreamCredentialsFailed."""
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:  # one fetch at a time; the waiters then find the new token
            token = self._fresh()
            if token is not None:
                return token
            if self._failure is not None and self._clock.now() - self._failed_at < FAILURE_HOLD_SECONDS:
                raise self._failure
            try:
                token, lifetime = await self._fetch()
            except UpstreamCredentialsFailed as exc:
                self._failure, self._failed_at = exc, self._clock.now()
                log.warning("upstream token fetch failed", server=self._server, error=exc.cause)
                raise
            self._failure = None
            self._token = token
            self._refresh_at = self._clock.now() + max(0.0, lifetime - self._config.refresh_before_seconds)
            return token

    def invalidate(self) -> None:
        """Forget the cached token (the upstream refused it): the next call fetches a new one."""
        self._token = None

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock.now() < self._refresh_at:
            return self._token
        return None

    async def _fetch(self) -> tuple[str, float]:
        config = self._config
        form = {"grant_type": "client_credentials"}
        for key in ("scope", "audience", "resource"):
            value = getattr(config, key)
            if value is not None:
                form[key] = value
        headers = {"Accept": "application/json"}
        if config.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
            pair = f"{quote_plus(config.client_id)}:{quote_plus(self._secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form |= {"client_id": config.client_id, "client_secret": self._secret}
        self.fetches += 1
        timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        try:
            async with self._http().post(config.token_url, data=form, timeout=timeout, headers=headers) as resp:
                status, body = resp.status, await resp.content.read(_MAX_TOKEN_RESPONSE)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise self._failed(f"HTTP {status} with a body that is not a JSON object")
        if status != 200:
            error = answer.get("error", "no error code")
            description = answer.get("error_description")
            raise self._failed(f"HTTP {status} {error}" + (f": {description}" if isinstance(description, str) else ""))
        token, kind = answer.get("access_token"), answer.get("token_type", "")
        if not isinstance(token, str) or not token:
            raise self._failed("the answer has no access_token")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise self._failed(f"token_type is {kind!r}, not Bearer")
        expires = answer.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else DEFAULT_TOKEN_SECONDS
        return token, lifetime

    def _failed(self, cause: str) -> UpstreamCredentialsFailed:
        return UpstreamCredentialsFailed(
            self._server, f"cannot get an access token from {self._config.token_url}: {cause}"
        )


class Credentials:
    """The headers one server gets on every request: static secrets, and the OAuth2 token if any."""

    def __init__(
        self,
        server: str,
        config: UpstreamCredentials,
        http: Callable[[], aiohttp.ClientSession],
        clock: Clock,
    ) -> None:
        """Raises: CredentialsError when a secret cannot be read."""
        where = f"servers.{server}.credentials.headers"
        self._static = {name: read_secret(secret, f"{where}.{name}") for name, secret in config.headers.items()}
        self.oauth2 = ClientCredentialsToken(server, config.oauth2, http, clock) if config.oauth2 else None

    async def headers(self) -> Mapping[str, str]:
        """Raises: UpstreamCredentialsFailed when the OAuth2 token cannot be had."""
        if self.oauth2 is None:
            return self._static
        return {**self._static, "Authorization": f"Bearer {await self.oauth2.token()}"}

    def rejected(self) -> None:
        """The server answered 401: drop the cached token (static secrets cannot be renewed)."""
        if self.oauth2 is not None:
            self.oauth2.invalidate()


def forwarded(names: tuple[str, ...], client_headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers listed in a server's `forward_headers` (lowercase names), that it sent.

    Config validation already refuses credentials and session headers in the list; they are
    never looked up here either way.
    """
    return {name: client_headers[name] for name in names if name in client_headers}
