"""Admin ASGI app on its own listener, never on the agent-facing port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolway.ingress.asgi import respond_json
from toolway.sessions.manager import ConnectionManager


class AdminApp:
    def __init__(self, manager: ConnectionManager, accepting: Callable[[], bool]) -> None:
        self._manager = manager
        self._accepting = accepting

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await respond_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            servers = {name: conn.state.value for name, conn in self._manager.connections.items()}
            ready = self._accepting()
            await respond_json(send, 200 if ready else 503, {"ready": ready, "servers": servers})
        else:
            await respond_json(send, 404, {"error": f"not found: {path}"})
