"""The `auth:` section: `none`, schemes and their sections, and errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from toolway.auth.setup import AuthSetupError, check_listen
from toolway.config import ConfigError, GatewayConfig, load_config


def _load(tmp_path: Path, auth: object, **extra: object) -> GatewayConfig:
    path = tmp_path / "toolway.yaml"
    path.write_text(yaml.safe_dump({"auth": auth, **extra}))
    return load_config(path)


def test_auth_none_is_explicit_and_allows_any_address(tmp_path: Path) -> None:
    config = _load(tmp_path, "none", listen={"host": "0.0.0.0"})
    assert config.auth is not None and not config.auth.enabled
    check_listen(config)


def test_no_auth_section_is_loopback_only(tmp_path: Path) -> None:
    path = tmp_path / "toolway.yaml"
    path.write_text(yaml.safe_dump({"listen": {"host": "0.0.0.0"}}))
    with pytest.raises(AuthSetupError, match=r"auth: none"):
        check_listen(load_config(path))
    path.write_text(yaml.safe_dump({"listen": {"host": "::1"}}))
    check_listen(load_config(path))


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"schemes": []}, "auth: .*write `auth: none`"),
        ({"schemes": ["jwt"]}, "scheme jwt needs an auth.jwt section"),
        ({"schemes": ["mtls"]}, "scheme mtls needs an auth.mtls section"),
        ({"schemes": ["kerberos"]}, "auth.schemes"),
        (
            {"schemes": ["jwt"], "jwt": {"issuer": "https://i", "audience": ["a"]}},
            "set exactly one of jwks_url, discovery: true, public_key_file or secret_env",
        ),
        (
            {"schemes": ["jwt"], "jwt": {"issuer": "https://i", "audience": ["a"], "secret_env": "S"}},
            "secret_env is an HS256 key",
        ),
        ({"schemes": ["jwt"], "jwt": {"issuer": "https://i", "jwks_url": "https://i/k"}}, "needs an audience"),
        ({"schemes": ["api_key"], "oauth": {"resource": "gw/mcp"}}, "auth.oauth.resource"),
        ({"schemes": ["api_key"], "tems": {}}, "auth.tems: unknown field"),
        ({"jwt": {}}, "auth.schemes: Field required"),
    ],
)
def test_bad_auth_sections_name_the_problem(tmp_path: Path, auth: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, auth)
