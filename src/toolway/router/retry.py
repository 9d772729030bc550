"""When a failed call may be tried again, and how long to wait first.

A retry is safe only when running the request twice cannot hurt: the request
provably never reached the server (connection refused, replica down, nothing
written), or the method reads only (lists, reads, prompts, completions), or the
tool is annotated `readOnlyHint` or `idempotentHint` (MCP spec, Tool annotations),
or the operator named it in `retries.retryable_tools`. Back-off is "full jitter":
uniform between 0 and initial x 2^(attempt-1), capped.
"""

from __future__ import annotations

import random
from typing import Any

from toolway.config.routing import Retries
from toolway.protocol.errors import UpstreamError
from toolway.registry.catalog import ServerCatalog

# Failures worth another try: the connection, not the answer. (A protocol error or an
# HTTP status is the server's considered answer; trying again would get the same.)
RETRIED_KINDS = frozenset({"unavailable", "refused", "reset", "timeout"})
# Methods that only read: running them twice is harmless.
READ_ONLY_METHODS = frozenset(
    {
        "tools/list",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "completion/complete",
    }
)


def idempotent_tools(catalog: ServerCatalog) -> frozenset[str]:
    """The catalog's tools annotated `readOnlyHint: true` or `idempotentHint: true`."""
    safe = set()
    for tool in catalog.get("tools/list"):
        notes = tool.get("annotations")
        if isinstance(notes, dict) and (notes.get("readOnlyHint") is True or notes.get("idempotentHint") is True):
            safe.add(tool["name"])
    return frozenset(safe)


class RetryPolicy:
    """One server's retry rules, precomputed from its config."""

    def __init__(self, config: Retries, rng: random.Random) -> None:
        self.attempts = config.attempts
        self._initial = config.backoff_initial
        self._max = config.backoff_max
        self._configured = frozenset(config.retryable_tools)
        self._rng = rng
        self._safe_cache: tuple[Any, frozenset[str]] | None = None

    def safe(self, method: str, tool: str | None, catalog: ServerCatalog) -> bool:
        """Would running this request twice be harmless?"""
        if method in READ_ONLY_METHODS:
            return True
        if method != "tools/call" or tool is None:
            return False
        if tool in self._configured:
            return True
        cached = self._safe_cache
        if cached is None or cached[0] is not catalog:  # annotations are read once per catalog snapshot
            cached = self._safe_cache = (catalog, idempotent_tools(catalog))
        return tool in cached[1]

    def should_retry(self, exc: UpstreamError, safe: bool, attempt: int) -> bool:
        """After `attempt` tries failed with `exc`: is another one allowed and safe?"""
        if attempt >= self.attempts or exc.kind not in RETRIED_KINDS:
            return False
        return not exc.delivered or safe

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure: full jitter, capped."""
        ceiling = min(self._max, self._initial * (2 ** (attempt - 1)))
        return self._rng.uniform(0, ceiling) if ceiling > 0 else 0.0
