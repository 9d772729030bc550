"""Admin API for traffic control: kill switches, version weights, draining, and the state of it all.

- `GET /admin/traffic`: kill switches, weights, every replica's health, and the state backend
  (`{"backend": ..., "synced": false}` while it is unreachable and this gateway serves from its copy).
- `POST /admin/kill` `{"server": NAME}` or `{"tool": "server__tool"}`; `DELETE` the same to revive.
- `POST /admin/servers/<name>/weights` `{"v2": 10}` (percent per version; `{}` clears).
- `POST /admin/servers/<name>/replicas/<id>/drain`; `DELETE` the same to undrain.

Changes take effect on the next call, on every replica sharing the state backend
(`state/traffic.py`). Errors answer 400 (bad body), 404 (unknown server, replica or
path), 405, or 503 (the state backend cannot be written: nothing was changed), with
`{"error": "..."}` naming the problem.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from toolway.config.model import NAMESPACE_SEPARATOR
from toolway.ingress.asgi import BodyTooLarge, read_body, respond_json
from toolway.router.dispatch import Dispatcher
from toolway.router.traffic import TrafficError
from toolway.sessions.manager import ConnectionManager
from toolway.state.backend import StateUnavailable
from toolway.state.traffic import SharedTraffic

PREFIXES = ("/admin/traffic", "/admin/kill", "/admin/servers/")
_MAX_BODY = 64 * 1024
_WEIGHTS = re.compile(r"^/admin/servers/([^/]+)/weights$")
_DRAIN = re.compile(r"^/admin/servers/([^/]+)/replicas/([^/]+)/drain$")


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TrafficAdmin:
    """Serves the traffic routes of the admin listener."""

    def __init__(self, manager: ConnectionManager, dispatcher: Dispatcher, shared: SharedTraffic) -> None:
        self._manager = manager
        self._dispatcher = dispatcher
        self._shared = shared

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(PREFIXES)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            status, body = await self._route(scope["method"], scope["path"], receive)
        except _Refused as exc:
            status, body = exc.status, {"error": str(exc)}
        except TrafficError as exc:
            status, body = 400, {"error": str(exc)}
        except StateUnavailable as exc:
            status, body = 503, {"error": f"nothing was changed: {exc}"}
        await respond_json(send, status, body)

    async def _route(self, method: str, path: str, receive: Any) -> tuple[int, dict[str, Any]]:
        shared = self._shared
        if path == "/admin/traffic":
            _allow(method, "GET")
            return 200, {**self._dispatcher.snapshot(self._manager.pools), "state": self._shared.status()}
        if path == "/admin/kill":
            _allow(method, "POST", "DELETE")
            kind, name = self._kill_target(await _json(receive))
            changed = await (shared.kill(kind, name) if method == "POST" else shared.revive(kind, name))
            return 200, {kind: name, "killed": method == "POST", "changed": changed}
        if match := _WEIGHTS.match(path):
            _allow(method, "POST")
            pool = self._pool(match.group(1))
            body = await _json(receive)
            versions = [r.version for r in pool.replicas]
            weights = await shared.set_weights(pool.name, body, versions)
            return 200, {"server": pool.name, "weights": weights, "shares": shared.traffic.shares(pool.name, versions)}
        if match := _DRAIN.match(path):
            _allow(method, "POST", "DELETE")
            pool = self._pool(match.group(1))
            replica = pool.replica(match.group(2))
            if replica is None:
                ids = [r.id for r in pool.replicas]
                raise _Refused(404, f"server {pool.name!r} has no replica {match.group(2)!r} (it has {ids})")
            await shared.drain(pool, replica.id, method == "POST")
            return 200, {"server": pool.name, **replica.describe(), "drained": pool.drained(replica.id)}
        raise _Refused(404, f"not found: {path}")

    def _pool(self, name: str) -> Any:
        pool = self._manager.get(name)
        if pool is None:
            raise _Refused(404, f"no server named {name!r} is configured and enabled")
        return pool

    def _kill_target(self, body: dict[str, Any]) -> tuple[str, str]:
        given = [(kind, body[kind]) for kind in ("server", "tool") if kind in body]
        if len(given) != 1 or not isinstance(given[0][1], str) or set(body) - {"server", "tool"}:
            raise _Refused(400, 'the body must be {"server": NAME} or {"tool": "server__tool"}')
        kind, name = given[0]
        server = name if kind == "server" else name.split(NAMESPACE_SEPARATOR, 1)[0]
        if self._manager.get(server) is None:
            raise _Refused(404, f"no server named {server!r} is configured and enabled")
        return kind, name


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Refused(405, f"method {method} not allowed here; use {' or '.join(allowed)}")


async def _json(receive: Any) -> dict[str, Any]:
    try:
        raw = await read_body(receive, _MAX_BODY)
    except BodyTooLarge:
        raise _Refused(400, f"the body is larger than {_MAX_BODY} bytes") from None
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    return body
