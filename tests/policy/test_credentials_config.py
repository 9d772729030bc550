"""Upstream credentials in config: forward_headers refusals, secrets kept out of error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolway.clock import MonotonicClock
from toolway.config import ConfigError
from toolway.config.loader import load_config_text
from toolway.config.model import HttpServerConfig
from toolway.upstream.credentials import Credentials, CredentialsError

SERVER = """\
servers:
  - name: web
    transport: streamable-http
    url: http://127.0.0.1:9100/mcp
"""


def load(extra: str) -> HttpServerConfig:
    server = load_config_text(SERVER + extra, source="toolway.yaml", environ={"WEB_KEY": "k-from-env"}).servers[0]
    assert isinstance(server, HttpServerConfig)
    return server


@pytest.mark.parametrize("name", ["Authorization", "cookie", "Mcp-Session-Id", "Proxy-Authorization", "MCP-Param-X"])
def test_forward_headers_never_names_credentials_or_the_session(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f"    forward_headers: [X-Tenant, {name}]\n")
    assert str(caught.value) == (
        f"toolway.yaml: servers.0.forward_headers: {name.lower()!r} is never forwarded to an upstream: the client's"
        " credentials and session stay at the gateway (use `credentials:` to give the upstream its own)"
    )


def test_forward_headers_are_kept_lowercase() -> None:
    assert load("    forward_headers: [X-Tenant, X-Request-Source]\n").forward_headers == [
        "x-tenant",
        "x-request-source",
    ]


def test_a_bad_secret_value_is_named_but_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load("    credentials:\n      headers:\n        X-Api-Key: {value: 987654321}\n")
    assert "servers.0.credentials.headers.X-Api-Key.value" in str(caught.value)
    assert "987654321" not in str(caught.value)


def test_oauth2_and_an_authorization_header_do_not_mix() -> None:
    with pytest.raises(ConfigError, match="`oauth2` sets the Authorization header"):
        load(
            "    credentials:\n      headers: {Authorization: x}\n"
            "      oauth2: {token_url: 'http://127.0.0.1:1/token', client_id: c, client_secret: {value: s}}\n"
        )


async def test_secret_headers_from_env_and_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-secret\n")
    server = load(
        "    credentials:\n      headers:\n"
        "        X-Api-Key: ${WEB_KEY}\n"
        f"        Authorization: {{value_file: {secret}, prefix: 'Bearer '}}\n"
    )
    assert server.credentials is not None
    assert "k-from-env" not in repr(server.credentials)  # pydantic SecretStr in every repr
    creds = Credentials("web", server.credentials, lambda: None, MonotonicClock())  # type: ignore[arg-type, return-value]
    assert await creds.headers() == {"X-Api-Key": "k-from-env", "Authorization": "Bearer file-secret"}


def test_an_unreadable_secret_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    server = load(f"    credentials:\n      headers:\n        X-Api-Key: {{value_file: {tmp_path / 'nope'}}}\n")
    assert server.credentials is not None
    with pytest.raises(CredentialsError) as caught:
        Credentials("web", server.credentials, lambda: None, MonotonicClock())  # type: ignore[arg-type, return-value]
    assert str(caught.value) == (
        "servers.web.credentials.headers.X-Api-Key.value_file:"
        f" cannot read {tmp_path / 'nope'}: No such file or directory"
    )
