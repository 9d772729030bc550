"""Per-server compatibility: can Toolway bridge the protocol versions this server speaks?

Toolway speaks every version in `protocol/versions.py` on both sides and bridges any
of them to any other. A server that answers with none of them (an `initialize` with an
unknown `protocolVersion`, a `server/discover` without a stateless-era version and no
`initialize` fallback) is refused at connect time (`UpstreamIncompatible`), so it is
never routed to; the reason is kept on its connection and shown here.
"""

from __future__ import annotations

from typing import Any

from toolway.protocol.versions import ALL_VERSIONS
from toolway.sessions.pool import ServerPool


def compatibility(conn: ServerPool | None) -> dict[str, Any]:  # one server: all its replicas
    """`{compatible: true|false|null, reason, protocol_version, era, bridged_versions}` for the API.

    `compatible` is null while nothing is known yet (never connected, or disabled).
    """
    if conn is None:
        return {"compatible": None, "reason": "not connected (disabled or not registered)"}
    negotiated = conn.negotiated
    refused = next((c.incompatible for c in conn.connections() if c.incompatible is not None), None)
    if negotiated is None and refused is not None:  # no replica speaks a version Toolway bridges
        return {"compatible": False, "reason": refused}
    if negotiated is None:
        return {"compatible": None, "reason": f"not connected yet: {conn.last_error or conn.state.value}"}
    return {
        "compatible": True,
        "reason": None,
        "era": "handshake" if negotiated.era == "handshake" else "stateless",
        "protocol_version": negotiated.protocol_version,
        # Clients of any of these versions reach this server through the gateway's bridge.
        "bridged_versions": list(ALL_VERSIONS),
    }
