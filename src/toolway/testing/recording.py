"""Recording the HTTP headers a fixture upstream receives, so tests can assert what reached it.

`python -m toolway.testing.upstream --record-headers FILE` appends one JSON line per HTTP
request (and per WebSocket upgrade) it receives: `{"method", "path", "headers"}` with
lowercase header names. `read_recorded` reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HeaderRecorder", "read_recorded", "record"]


def record(path: str, method: str, target: str, headers: Iterable[tuple[str, str]]) -> None:
    """Append one request's headers to `path` (one line, one write: lines never interleave)."""
    line = json.dumps({"method": method, "path": target, "headers": {k.lower(): v for k, v in headers}})
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


class HeaderRecorder:
    """ASGI wrapper: record every HTTP request's headers, then serve it unchanged."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            record(self.path, scope.get("method", "GET"), scope["path"], headers)
        await self.app(scope, receive, send)


def read_recorded(path: Path) -> list[dict[str, Any]]:
    """Every request recorded so far: dicts with `method`, `path` and `headers` (lowercase names)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def header_values(records: Iterable[Mapping[str, Any]], name: str) -> list[str]:
    """Every value of header `name` (any case) across `records`."""
    return [r["headers"][name.lower()] for r in records if name.lower() in r["headers"]]
