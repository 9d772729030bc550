"""Authentication and authorization as the composition root wires them, built once from the config.

Everything here is None/off when the config has no `auth` section or says `auth: none`:
then the gateway behaves exactly as it does without this module.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Coroutine
from typing import Any

from toolway.auth.api_key import ApiKeys
from toolway.auth.authenticator import Authenticator
from toolway.auth.identity import Identity
from toolway.auth.key_store import KeyStore
from toolway.auth.scopes import Authorizer
from toolway.auth.setup_errors import JwtConfigError
from toolway.clock import Clock
from toolway.config.model import GatewayConfig
from toolway.ingress.authn import IngressAuth
from toolway.pipeline.authorize import Authorize, Owner, VisibleLists
from toolway.registry.store import StoreError


class AuthSetupError(Exception):
    """Authentication cannot be set up as configured; the message says why."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(config: GatewayConfig) -> None:
    """Refuse to serve a non-loopback address without authentication, unless `auth: none` says so.

    Raises:
        AuthSetupError: naming the address and the two ways out.
    """
    if config.auth is None and not is_loopback(config.listen.host):
        raise AuthSetupError(
            f"refusing to listen on {config.listen.host} without authentication: configure auth.schemes "
            "(docs/auth.md), or set `auth: none` to serve it unauthenticated on purpose"
        )
    admin = config.admin
    admin_token(config)  # a named variable that is unset fails here, before any port is bound
    if admin.enabled and admin.token_env is None and not is_loopback(admin.host):
        # The admin API registers servers, flips kill switches and approves tools: never open off loopback.
        raise AuthSetupError(
            f"refusing to serve the admin API on {admin.host} without a token: set admin.token_env to the "
            "name of an environment variable holding one (docs/auth.md), or bind admin.host to loopback"
        )


MIN_ADMIN_TOKEN = 16


def admin_token(config: GatewayConfig) -> bytes | None:
    """The admin API's bearer token, read from the variable `admin.token_env` names; None if unset.

    Raises:
        AuthSetupError: the variable is unset or too short to be a secret.
    """
    name = config.admin.token_env
    if name is None:
        return None
    value = os.environ.get(name, "")
    if len(value) < MIN_ADMIN_TOKEN:
        problem = "is not set" if not value else f"holds fewer than {MIN_ADMIN_TOKEN} characters"
        raise AuthSetupError(f"admin.token_env: the environment variable {name} {problem}")
    return value.encode()


class GatewayAuth:
    def __init__(self, config: GatewayConfig, clock: Clock) -> None:
        """Raises AuthSetupError when a configured key cannot be read."""
        auth = config.auth if config.auth is not None and config.auth.enabled else None
        self.config = auth
        self._clock = clock
        self.authorizer = Authorizer(auth.teams) if auth is not None else None
        self.api_keys = ApiKeys() if auth is not None and "api_key" in auth.schemes else None
        self.authenticator: Authenticator | None = None
        self.ingress: IngressAuth | None = None
        self.stdio_identity: Identity | None = None
        if auth is None:
            return
        try:
            self.authenticator = Authenticator(auth, clock=clock, api_keys=self.api_keys)
        except JwtConfigError as exc:
            raise AuthSetupError(str(exc)) from None
        self.ingress = IngressAuth(self.authenticator)
        self.stdio_identity = Identity(
            subject=auth.stdio.subject,
            scheme="stdio",
            team=auth.stdio.team,
            roles=frozenset(auth.stdio.roles),
            scopes=frozenset(auth.stdio.scopes),
        )

    def visible_lists(self) -> VisibleLists | None:
        """The router's per-identity list hook; None without authentication."""
        return VisibleLists(self.authorizer) if self.authorizer is not None else None

    def authorize(self, owner_of: Owner, template_owner: Owner) -> Authorize | None:
        """The chain's authorization filter; None without authentication."""
        return Authorize(self.authorizer, owner_of, template_owner) if self.authorizer is not None else None

    async def start(self, store_url: str) -> None:
        """Open the API key table and load it.

        Raises:
            StoreError: the table cannot be opened or read.
        """
        if self.api_keys is None:
            return
        self.api_keys.store = await KeyStore.open(store_url)
        await self.api_keys.reload()

    def background(self) -> Coroutine[Any, Any, None] | None:
        """The task that keeps reloading API keys, for the gateway's task group; None if no keys."""
        if self.api_keys is None or self.config is None:
            return None
        return self.api_keys.run_reloads(self._clock, self.config.api_keys.reload_seconds)

    async def close(self) -> None:
        if self.api_keys is not None and self.api_keys.store is not None:
            await self.api_keys.store.close()
            self.api_keys.store = None
        if self.authenticator is not None:
            await self.authenticator.close()

    def listener_options(self) -> dict[str, Any]:
        """uvicorn options for the agent port: TLS termination with client certificates when
        `auth.mtls` is set (required when mTLS is the only scheme, optional otherwise)."""
        mtls = self.config.mtls if self.config is not None else None
        if mtls is None:
            return {}
        from toolway.ingress.tls import TlsHttpProtocol, TlsWebSocketProtocol

        only = self.config is not None and list(self.config.schemes) == ["mtls"]
        return {
            "ssl_certfile": mtls.cert_file,
            "ssl_keyfile": mtls.key_file,
            "ssl_ca_certs": mtls.ca_file,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if only else ssl.CERT_OPTIONAL,
            "http": TlsHttpProtocol,
            "ws": TlsWebSocketProtocol,
        }


__all__ = ["AuthSetupError", "GatewayAuth", "StoreError", "check_listen", "is_loopback"]
