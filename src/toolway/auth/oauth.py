"""Toolway as an OAuth 2.1 resource server, as the MCP authorization spec describes it.

- Protected Resource Metadata (RFC 9728) at `/.well-known/oauth-protected-resource` and per
  endpoint, `/.well-known/oauth-protected-resource/mcp` (and `/servers/<name>/mcp`, …):
  which authorization servers issue tokens for it, which scopes exist, how to send a token.
- Challenges (RFC 6750 §3): `401` with `WWW-Authenticate: Bearer resource_metadata="…"`
  (and `error="invalid_token"` when a token was presented but refused); `403` with
  `error="insufficient_scope", scope="…"` when a call needs a scope the token lacks, so a
  client can step up.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from toolway.config.auth import AuthConfig

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750: no '"' or '\' in a quoted value


class ProtectedResource:
    """The gateway's resource identity: its canonical URL, metadata documents and challenges."""

    def __init__(self, config: AuthConfig) -> None:
        oauth = config.oauth
        self.enabled = oauth is not None
        self.resource = oauth.resource.rstrip("/") if oauth is not None else None
        parts = urlsplit(self.resource or "")
        self.origin = f"{parts.scheme}://{parts.netloc}" if oauth is not None else ""
        # Every endpoint's URL is the canonical URL's base plus the endpoint's path.
        self._base = (self.resource or "").removesuffix("/mcp")
        servers = list(oauth.authorization_servers) if oauth is not None else []
        if not servers and config.jwt is not None:
            servers = [config.jwt.issuer]
        self._servers = servers
        self._scopes = list(oauth.scopes_supported) if oauth is not None else []
        self._name = oauth.resource_name if oauth is not None else "Toolway"
        # The audiences that name the whole gateway.
        audiences = set(config.jwt.audience) if config.jwt is not None else set()
        if not audiences and self.resource:
            audiences = {self.resource, self.origin}
        self.audiences = frozenset(audiences)

    def endpoint_url(self, path: str) -> str | None:
        """The canonical URL of one endpoint (a token for it alone is accepted there)."""
        return self._base + path if self.enabled else None

    def metadata(self, suffix: str) -> dict[str, Any]:
        """The RFC 9728 document for the resource at `suffix` ("" for the gateway's origin)."""
        return {
            "resource": (self._base + suffix) if suffix else self.origin,
            "authorization_servers": self._servers,
            "scopes_supported": self._scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": self._name,
        }

    def metadata_url(self, path: str) -> str:
        return f"{self.origin}{WELL_KNOWN}{urlsplit(self._base).path}{path}"

    def challenge(self, path: str, *, error: str | None, description: str | None, scope: str | None = None) -> bytes:
        """A `WWW-Authenticate` value for a refusal at endpoint `path`."""
        params = []
        if self.enabled:
            params.append(f'resource_metadata="{self.metadata_url(path)}"')
        else:
            params.append('realm="toolway"')
        scope = scope if scope is not None else (" ".join(self._scopes) or None)
        if scope:
            params.append(f'scope="{_quoted(scope)}"')
        if error is not None:
            params.append(f'error="{error}"')
            if description:
                params.append(f'error_description="{_quoted(description)}"')
        return ("Bearer " + ", ".join(params)).encode("latin-1")


def _quoted(text: str) -> str:
    return _UNSAFE.sub("'", text)[:300]
