"""The input document a policy sees, built once per call from the `Call` and the wall clock.

    {
      "identity": null | {"subject", "scheme", "team", "roles": [...], "scopes": [...], "claims": {...}},
      "method": "tools/call", "server": "web", "name": "search",
      "tool": "search" (tools/call), "prompt": "greet" (prompts/get), "uri": "..." (resources/read),
      "target": "web/search" (or the URI), "arguments": {...},
      "time": {"rfc3339", "unix_ns", "timezone", "local", "weekday": "mon", "hour", "minute"},
      "request": {"id", "client", "transport", "era", "protocol_version", "endpoint"}
    }

Request headers are never part of it: they would carry the client's token into the decision log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from toolway.auth.identity import Identity
from toolway.pipeline.context import Call
from toolway.router.names import split

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OwnerOf = Callable[[str], str | None]


def identity_document(identity: Identity | None) -> dict[str, Any] | None:
    if identity is None:
        return None
    return {
        "subject": identity.subject,
        "scheme": identity.scheme,
        "team": identity.team,
        "roles": sorted(identity.roles),
        "scopes": sorted(identity.scopes),
        "claims": identity.claims,
    }


def time_document(now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    """`now` as policies read it: UTC and local RFC 3339, and the local weekday, hour and minute."""
    local = now.astimezone(zone)
    return {
        "rfc3339": now.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z"),
        "unix_ns": int(now.timestamp() * 1_000_000_000),
        "timezone": zone.key,
        "local": local.isoformat(),
        "weekday": _WEEKDAYS[local.weekday()],
        "hour": local.hour,
        "minute": local.minute,
    }


def call_document(call: Call, time: dict[str, Any], owner_of: OwnerOf) -> dict[str, Any]:
    """The input for one `tools/call`, `prompts/get` or `resources/read`.

    `owner_of(uri)` names the server that serves a resource (the router's catalog), so a
    policy can decide by server for resource reads too.
    """
    params = call.params or {}
    server, name, uri = call.scope, None, None
    raw_name = params.get("name")
    if call.method in ("tools/call", "prompts/get") and isinstance(raw_name, str):
        parts = None if call.scope is not None else split(raw_name)
        server, name = (parts[0], parts[1]) if parts is not None else (server, raw_name)
    elif call.method == "resources/read" and isinstance(params.get("uri"), str):
        uri = params["uri"]
        server = server or owner_of(uri)
    arguments = params.get("arguments")
    return {
        "identity": identity_document(call.identity),
        "method": call.method,
        "server": server,
        "name": name,
        "tool": name if call.method == "tools/call" else None,
        "prompt": name if call.method == "prompts/get" else None,
        "uri": uri,
        "target": uri if uri is not None else f"{server or ''}/{name or ''}",
        "arguments": arguments if isinstance(arguments, dict) else {},
        "time": time,
        "request": {
            "id": call.request_id,
            "client": call.client,
            "transport": call.transport,
            "era": call.era,
            "protocol_version": call.protocol_version,
            "endpoint": f"/servers/{call.scope}" if call.scope is not None else "/mcp",
        },
    }
