"""Admin ASGI app on its own listener, never on the agent-facing port.

- `/healthz`: 200 while the process is up.
- `/readyz`: 200 when the gateway accepts calls, its store answers, its config is
  loaded and at least `admin.min_healthy_upstreams` servers are connected; 503
  otherwise. The body names every check and the reasons it failed.
- `/metrics`: Prometheus exposition (OpenMetrics when the scraper asks for it).
- `/admin/stats`: per-server and per-tool calls, errors and latency over a recent window.
- `/admin/audit?tool=&principal=&since=&limit=`: audit records, oldest first.
- `/admin/traffic`, `/admin/kill`, `/admin/servers/<name>/weights|replicas/<id>/drain`:
  traffic control (admin/traffic.py).
- `POST /admin/keys/reload`: re-read the API key table now (`toolway keys` calls it), and
  tell the other replicas to (docs/state.md).
- `/admin/servers…`, `/admin/tools/…`, `/v0.1/servers…`: the registry (`admin/servers.py`).
- `/admin/openapi.json`: all of the above as an OpenAPI 3.1 document (`admin/openapi.py`).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from toolway.admin import openapi
from toolway.admin.servers import RegistryApi
from toolway.admin.traffic import TrafficAdmin
from toolway.auth.api_key import ApiKeys
from toolway.ingress.asgi import respond, respond_json
from toolway.observability.audit import AuditLog
from toolway.observability.metrics import Metrics
from toolway.observability.stats import Stats
from toolway.registry.store import StoreError
from toolway.sessions.manager import ConnectionManager
from toolway.sessions.upstream import State
from toolway.state.events import ChangeEvent, KeysChanged

# A store that does not answer a `SELECT 1` within this is not ready, and /readyz must not hang on it.
STORE_CHECK_SECONDS = 2.0


# Probes and scrapers reach these without the admin token; everything else needs it when it is set.
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _bearer_matches(scope: dict[str, Any], token: bytes) -> bool:
    presented = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, credential = presented.partition(b" ")
    # Constant-time comparison: the token must not leak through response timing.
    return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), token)


class AdminApp:
    audit: AuditLog | None = None  # set by the composition root: serves /admin/audit
    traffic: TrafficAdmin | None = None  # set by the composition root: serves traffic control
    keys: ApiKeys | None = None  # set by the composition root when API keys are on
    registry: RegistryApi | None = None  # set by the composition root: serves the registry routes
    token: bytes | None = None  # the admin bearer token (admin.token_env); None: open, loopback only
    announce: Callable[[ChangeEvent], Awaitable[None]] | None = None  # to the other replicas (state/shared.py)

    def __init__(
        self,
        manager: ConnectionManager,
        accepting: Callable[[], bool],
        *,
        metrics: Metrics | None = None,
        stats: Stats | None = None,
        store_check: Callable[[], Awaitable[None]] | None = None,
        min_healthy_upstreams: int = 0,
    ) -> None:
        self._manager = manager
        self._accepting = accepting
        self._metrics = metrics
        self._stats = stats
        self._store_check = store_check
        self._min_healthy = min_healthy_upstreams

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if self.token is not None and path not in _OPEN_PATHS and not _bearer_matches(scope, self.token):
            await respond_json(
                send,
                401,
                {"error": "the admin API needs `Authorization: Bearer <token>` (admin.token_env)"},
                [(b"www-authenticate", b'Bearer realm="toolway-admin"')],
            )
            return
        if path == "/healthz":
            await respond_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ready, body = await self.readiness()
            await respond_json(send, 200 if ready else 503, body)
        elif path == "/metrics" and self._metrics is not None:
            accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), "")
            payload, content_type = self._metrics.exposition(accept)
            await respond(send, 200, payload, content_type=content_type.encode())
        elif path == "/admin/stats" and self._stats is not None:
            await respond_json(send, 200, self._stats.snapshot())
        elif path == "/admin/audit" and self.audit is not None:
            await self.audit.serve_admin(scope, send)
        elif path == "/admin/openapi.json":
            await respond_json(send, 200, openapi.build())
        # The registry first: its routes under /admin/servers/ are exact, traffic's is a prefix.
        elif self.registry is not None and await self.registry.handle(scope, receive, send):
            pass
        elif self.traffic is not None and self.traffic.handles(path):
            await self.traffic(scope, receive, send)
        elif path == "/admin/keys/reload" and self.keys is not None:
            await _reload_keys(self.keys, scope["method"], send, self.announce)
        else:
            await respond_json(send, 404, {"error": f"not found: {path}"})

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Run every readiness check; (ready, the JSON body that explains it)."""
        reasons: list[str] = []
        accepting = self._accepting()
        if not accepting:
            reasons.append("the gateway is not accepting calls (starting or shutting down)")
        store_ok = await self._check_store(reasons)
        servers = {name: conn.state.value for name, conn in self._manager.connections.items()}
        connected = sum(1 for conn in self._manager.connections.values() if conn.state is State.READY)
        upstreams_ok = connected >= self._min_healthy
        if not upstreams_ok:
            reasons.append(
                f"{connected} upstream server(s) connected, admin.min_healthy_upstreams asks for {self._min_healthy}"
            )
        body = {
            "ready": not reasons,
            "checks": {
                "accepting": accepting,
                # The gateway is built from a validated config, so a running one has it loaded.
                "config": True,
                "store": store_ok,
                "upstreams": {"connected": connected, "required": self._min_healthy, "ok": upstreams_ok},
            },
            "reasons": reasons,
            "servers": servers,
        }
        return not reasons, body

    async def _check_store(self, reasons: list[str]) -> bool:
        if self._store_check is None:
            return True
        try:
            async with asyncio.timeout(STORE_CHECK_SECONDS):
                await self._store_check()
        except TimeoutError:
            reasons.append(f"the store did not answer within {STORE_CHECK_SECONDS:g} s")
            return False
        except Exception as exc:
            reasons.append(f"the store is unreachable: {exc}")
            return False
        return True


async def _reload_keys(
    keys: ApiKeys, method: str, send: Any, announce: Callable[[ChangeEvent], Awaitable[None]] | None
) -> None:
    if method != "POST":
        await respond(send, 405, headers=[(b"allow", b"POST")])
        return
    try:
        count = await keys.reload()
    except StoreError as exc:
        await respond_json(send, 503, {"error": str(exc)})
        return
    if announce is not None:
        await announce(KeysChanged())
    await respond_json(send, 200, {"keys": count})
