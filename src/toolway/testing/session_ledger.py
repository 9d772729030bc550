"""What the fixture upstream knows about the sessions a client (a gateway) opened with it.

Over Streamable HTTP the fixture's app is wrapped in `LedgerApp`, which watches the wire:
a response that hands out an `Mcp-Session-Id` opens a session, a `DELETE` with one ends it.
Test-only routes beside `/mcp`:

- `GET /debug/sessions`: `{"open": [ids], "seen": N, "peak": {id: most calls at once},
  "inflight": {id: calls holding now}, "posts": {id: messages POSTed on it (pings too)}}`
- `POST /debug/refuse?on=1` (`on=0` undoes): new sessions are refused (HTTP 503), as a server
  at its own limit would; existing sessions keep working.
- `POST /debug/release?key=K`: lets every `session` call holding on `K` return.

The `session(key="")` tool answers `"<pid> <session id>"` (`-` without one: stateless era or
stdio, where the process is the session); with a `key`, it first holds until that key is
released, counted as a call in flight on its session (the `peak` above).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LEDGER", "LedgerApp", "SessionLedger", "add_session_tools"]


@dataclass
class SessionLedger:
    open: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    inflight: Counter[str] = field(default_factory=Counter)
    peak: dict[str, int] = field(default_factory=dict)
    posts: Counter[str] = field(default_factory=Counter)  # messages received on each session
    refuse_new: bool = False
    holds: dict[str, anyio.Event] = field(default_factory=dict)

    def hold(self, key: str) -> anyio.Event:
        return self.holds.setdefault(key, anyio.Event())

    def report(self) -> dict[str, object]:
        inflight = {sid: n for sid, n in self.inflight.items() if n}
        return {
            "open": sorted(self.open),
            "seen": len(self.seen),
            "peak": dict(self.peak),
            "inflight": inflight,
            "posts": dict(self.posts),
        }


LEDGER = SessionLedger()  # one fixture process serves one ledger


def add_session_tools(server: MCPServer, ledger: SessionLedger = LEDGER) -> None:
    """Register `session` on `server`."""

    @server.tool(description="'<pid> <session id>'; with `key`, first hold until the key is released.")
    async def session(ctx: Context, key: str = "") -> str:
        headers = ctx.headers or {}
        sid = headers.get("mcp-session-id") or "-"
        if key:
            ledger.inflight[sid] += 1
            ledger.peak[sid] = max(ledger.peak.get(sid, 0), ledger.inflight[sid])
            try:
                await ledger.hold(key).wait()
            finally:
                ledger.inflight[sid] -= 1
        return f"{os.getpid()} {sid}"


class LedgerApp:
    """ASGI wrapper: keeps the ledger of sessions and serves the `/debug/…` routes."""

    def __init__(self, app: ASGIApp, ledger: SessionLedger = LEDGER) -> None:
        self.app = app
        self.ledger = ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path.startswith("/debug/"):
            await self._debug(path, method, parse_qs(scope.get("query_string", b"").decode()), send)
            return
        sid = _session_id(scope["headers"])
        if sid is not None and method == "POST":
            self.ledger.posts[sid] += 1
        if sid is None and method == "POST" and self.ledger.refuse_new:
            body = b"refusing new sessions"
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and sid is None:
                given = next(
                    (v.decode() for k, v in message.get("headers", []) if k.lower() == b"mcp-session-id"), None
                )
                if given is not None:
                    self.ledger.open.add(given)
                    self.ledger.seen.add(given)
            await send(message)

        await self.app(scope, receive, watch)
        if method == "DELETE" and sid is not None:
            self.ledger.open.discard(sid)

    async def _debug(self, path: str, method: str, query: dict[str, list[str]], send: Send) -> None:
        if path == "/debug/sessions" and method == "GET":
            await _json(send, 200, self.ledger.report())
        elif path == "/debug/refuse" and method == "POST":
            self.ledger.refuse_new = query.get("on", ["1"])[0] == "1"
            await _json(send, 200, {"refuse_new": self.ledger.refuse_new})
        elif path == "/debug/release" and method == "POST" and "key" in query:
            self.ledger.hold(query["key"][0]).set()
            await _json(send, 200, {"released": query["key"][0]})
        else:
            await _json(send, 404, {"error": f"no such route: {method} {path}"})


def _session_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    return next((v.decode() for k, v in headers if k.lower() == b"mcp-session-id"), None)


async def _json(send: Send, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
