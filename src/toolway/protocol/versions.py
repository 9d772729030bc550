"""Protocol versions and the two eras Toolway speaks on one endpoint.

Handshake era: ``initialize`` negotiates a version and the HTTP transport keeps an
``Mcp-Session-Id``. Stateless era (2026-07-28): every request carries its version and
client capabilities in ``params._meta``; there is no session.
"""

from __future__ import annotations

from typing import Final, Literal

Era = Literal["modern", "handshake"]

MODERN_VERSIONS: Final = ("2026-07-28",)
LATEST_MODERN: Final = MODERN_VERSIONS[-1]
# Newest first: `initialize` answers with the client's version when we know it,
# otherwise with the first of these.
HANDSHAKE_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]
ALL_VERSIONS: Final = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"

# HTTP header names, lowercase as ASGI delivers them.
H_PROTOCOL_VERSION: Final = "mcp-protocol-version"
H_METHOD: Final = "mcp-method"
H_NAME: Final = "mcp-name"
H_SESSION_ID: Final = "mcp-session-id"
H_PARAM_PREFIX: Final = "mcp-param-"

# Method -> the params key mirrored in the `Mcp-Name` header (2026-07-28 transports).
NAME_BEARING_METHODS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def negotiate_handshake(requested: object) -> str:
    """The version `initialize` answers with: the client's, if we speak it, else our latest."""
    if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS:
        return requested
    return LATEST_HANDSHAKE
