"""RFC 9728 metadata documents and RFC 6750 challenges, as the gateway writes them."""

from __future__ import annotations

import re

from toolway.auth.oauth import ProtectedResource
from toolway.config.auth import AuthConfig

_PARAM = re.compile(r'([a-z_]+)="([^"\\]*)"')


def _resource() -> ProtectedResource:
    return ProtectedResource(
        AuthConfig.model_validate(
            {
                "schemes": ["jwt"],
                "jwt": {"issuer": "https://idp.test", "jwks_url": "https://idp.test/jwks"},
                "oauth": {"resource": "https://gw.test/mcp", "scopes_supported": ["tools:call:*"]},
            }
        )
    )


def _params(value: bytes) -> dict[str, str]:
    text = value.decode()
    assert text.startswith("Bearer ")
    return dict(_PARAM.findall(text))


def test_metadata_per_path_and_at_the_root() -> None:
    resource = _resource()
    doc = resource.metadata("/mcp")
    assert doc["resource"] == "https://gw.test/mcp"
    assert doc["authorization_servers"] == ["https://idp.test"]
    assert doc["scopes_supported"] == ["tools:call:*"]
    assert doc["bearer_methods_supported"] == ["header"]
    assert resource.metadata("")["resource"] == "https://gw.test"
    assert resource.metadata("/servers/web/mcp")["resource"] == "https://gw.test/servers/web/mcp"
    assert resource.audiences == {"https://gw.test/mcp", "https://gw.test"}


def test_challenges() -> None:
    resource = _resource()
    missing = _params(resource.challenge("/mcp", error=None, description="x"))
    assert missing == {
        "resource_metadata": "https://gw.test/.well-known/oauth-protected-resource/mcp",
        "scope": "tools:call:*",
    }  # RFC 6750 §3.1: no error code when no credentials were sent
    refused = _params(resource.challenge("/mcp", error="invalid_token", description='bad "quote" \\ here'))
    assert refused["error"] == "invalid_token"
    assert '"' not in refused["error_description"] and "\\" not in refused["error_description"]
    step_up = _params(resource.challenge("/mcp", error="insufficient_scope", description="d", scope="tools:call:a/b"))
    assert step_up["scope"] == "tools:call:a/b" and step_up["error"] == "insufficient_scope"
