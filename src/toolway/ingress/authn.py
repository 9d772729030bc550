"""Authentication at the door: the one helper every agent-facing transport calls.

Runs before any session lookup, on every request (a session id alone never
authenticates), and answers a failure the HTTP way — 401 with `WWW-Authenticate` — or,
for a WebSocket, with the same 401 in place of the upgrade. Also serves the RFC 9728
metadata documents, which need no authentication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from toolway.auth.authenticator import Authenticator
from toolway.auth.identity import Identity
from toolway.auth.oauth import WELL_KNOWN
from toolway.ingress.asgi import respond, respond_json
from toolway.protocol.errors import AuthenticationFailed


class IngressAuth:
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self._resource = authenticator.resource

    async def identify(self, scope: Mapping[str, Any], headers: Mapping[str, str], path: str) -> Identity:
        """The caller's identity. Raises AuthenticationFailed."""
        tls = (scope.get("extensions") or {}).get("tls")
        return await self.authenticator.authenticate(headers, tls, path)

    def is_metadata(self, path: str) -> bool:
        return self._resource.enabled and (path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/"))

    async def metadata(self, path: str, method: str, send: Any, is_endpoint: Callable[[str], bool]) -> None:
        """`GET /.well-known/oauth-protected-resource[/<endpoint path>]` (RFC 9728 §3)."""
        suffix = path[len(WELL_KNOWN) :]
        if method != "GET":
            await respond(send, 405, headers=[(b"allow", b"GET")])
        elif suffix and not is_endpoint(suffix):
            await respond_json(send, 404, {"error": f"no protected resource at {suffix}"})
        else:
            await respond_json(send, 200, self._resource.metadata(suffix), headers=[(b"cache-control", b"max-age=300")])

    async def reject(self, send: Any, exc: AuthenticationFailed, path: str) -> None:
        """401, `WWW-Authenticate` naming the metadata, and an OAuth-style JSON body."""
        status, headers, body = self._refusal(exc, path)
        await respond_json(send, status, body, headers=headers)

    async def reject_websocket(self, receive: Any, send: Any, exc: AuthenticationFailed, path: str) -> None:
        """The same 401, sent instead of accepting the upgrade (ASGI's WebSocket Denial Response)."""
        if (await receive())["type"] != "websocket.connect":
            return
        status, headers, body = self._refusal(exc, path)
        raw = orjson.dumps(body)
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": raw})

    def insufficient_scope(self, path: str, body: bytes | None) -> list[tuple[bytes, bytes]]:
        """The step-up challenge for a 403 carrying a `PermissionDenied` JSON-RPC error."""
        required = None
        try:
            error = orjson.loads(body or b"null").get("error") or {}
            required = (error.get("data") or {}).get("requiredScope")
        except (orjson.JSONDecodeError, AttributeError):
            pass
        value = self._resource.challenge(
            path,
            error="insufficient_scope",
            description="the token lacks the scope this request needs",
            scope=required if isinstance(required, str) else None,
        )
        return [(b"www-authenticate", value)]

    def _refusal(self, exc: AuthenticationFailed, path: str) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any]]:
        challenge = self._resource.challenge(path, error=exc.error, description=exc.message)
        body = {"error": exc.error or "invalid_request", "error_description": exc.message}
        return 401, [(b"www-authenticate", challenge), (b"cache-control", b"no-store")], body
