"""Results in the caller's era: what a stateless-era client requires, what a handshake-era one expects.

2026-07-28 results carry `resultType`, and cacheable ones `ttlMs` and `cacheScope`
(the SDK clients reject them otherwise). Handshake-era clients get none of these:
some validate empty results strictly.
"""

from __future__ import annotations

from typing import Any, Final

from toolway.protocol.versions import Era

CACHEABLE: Final = frozenset(
    {
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "server/discover",
    }
)
_MODERN_ONLY: Final = ("resultType", "ttlMs", "cacheScope")
_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"


def adapt_result(method: str, result: dict[str, Any], era: Era) -> dict[str, Any]:
    """Adapt a result (owned by the caller, changed in place) to the client's era."""
    if era == "modern":
        result.setdefault("resultType", "complete")
        if method in CACHEABLE:
            result.setdefault("ttlMs", 0)
            result.setdefault("cacheScope", "private")
    elif result.get("resultType", "complete") == "complete":
        for key in _MODERN_ONLY:
            result.pop(key, None)
        meta = result.get("_meta")
        if isinstance(meta, dict) and _SERVER_INFO in meta:
            # A stateless-era upstream's self-description: the client's server is the gateway.
            meta = {k: v for k, v in meta.items() if k != _SERVER_INFO}
            if meta:
                result["_meta"] = meta
            else:
                del result["_meta"]
    return result
