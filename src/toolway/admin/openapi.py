"""`GET /admin/openapi.json`: the admin listener's API as an OpenAPI 3.1 document.

Built once from the registry's route table (`admin/servers.py`), the admin app's own
routes, the discovery routes, and the JSON schemas of the pydantic models that validate
request bodies (`ServerConfig`) or describe responses (below: documentation only, never
validated per request).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from toolway import __version__
from toolway.admin.servers import ROUTES
from toolway.config.model import ServerConfig

# The admin app's routes outside the registry table: (method, path, summary, content type).
STATIC_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/healthz", "Liveness: 200 while the process is up", "application/json"),
    ("GET", "/readyz", "Readiness: 200 when ready, 503 with reasons otherwise", "application/json"),
    ("GET", "/metrics", "Prometheus metrics", "text/plain"),
    ("GET", "/admin/stats", "Per-server and per-tool calls, errors and latency", "application/json"),
    ("GET", "/admin/audit", "Audit records (?tool=&principal=&since=&limit=)", "application/json"),
    ("GET", "/admin/openapi.json", "This document", "application/json"),
    # Traffic control (admin/traffic.py) and API keys (auth/api_key.py).
    ("GET", "/admin/traffic", "Kill switches, weights and every replica's health", "application/json"),
    (
        "POST",
        "/admin/kill",
        'Kill a server or a tool: {"server": NAME} or {"tool": "server__tool"}',
        "application/json",
    ),
    ("DELETE", "/admin/kill", "Revive a killed server or tool (same body)", "application/json"),
    ("POST", "/admin/servers/{name}/weights", 'Traffic share per version, e.g. {"v2": 10}', "application/json"),
    ("POST", "/admin/servers/{name}/replicas/{id}/drain", "Drain one replica", "application/json"),
    ("DELETE", "/admin/servers/{name}/replicas/{id}/drain", "Undrain one replica", "application/json"),
    ("POST", "/admin/keys/reload", "Re-read the API key table (when API keys are on)", "application/json"),
)
DISCOVERY_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("/v0.1/servers", "Discovery: servers as server.json (?cursor=&limit=&search=)", "DiscoveryList"),
    (
        "/v0.1/servers/{name}",
        "Discovery: one server (`<namespace>/<server>` URL-encoded, or the bare name)",
        "DiscoveryEntry",
    ),
    ("/v0.1/servers/{name}/versions", "Discovery: a server's versions (the gateway serves one)", "DiscoveryList"),
    ("/v0.1/servers/{name}/versions/{version}", "Discovery: one version (`latest` works)", "DiscoveryEntry"),
)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(_Doc):
    error: str
    field: str | None = None


class Compatibility(_Doc):
    compatible: bool | None
    reason: str | None = None
    era: str | None = None
    protocol_version: str | None = None
    bridged_versions: list[str] = []


class HealthState(_Doc):
    state: str
    for_seconds: float
    consecutive_failures: int
    consecutive_successes: int
    last_error: str | None


class Server(_Doc):
    name: str
    managed_by: str
    enabled: bool
    config: dict[str, Any]
    state: str
    last_error: str | None
    listed: bool
    server_info: dict[str, Any] | None
    protocol_version: str | None
    compatibility: Compatibility
    health: HealthState | None
    tools: int
    drifted_tools: list[str]


class ServerList(_Doc):
    servers: list[Server]


class Removed(_Doc):
    removed: str
    drained: bool


class HealthTransition(_Doc):
    server: str
    at: str
    from_: str = Field(alias="from")
    to: str
    reason: str | None


class Health(_Doc):
    server: str
    current: HealthState | None
    history: list[HealthTransition]


class FieldChange(_Doc):
    path: str
    change: str
    approved: Any = None
    current: Any = None


class ToolDiff(_Doc):
    tool: str
    status: str
    pinned_hash: str
    current_hash: str
    changes: list[FieldChange]
    approved: dict[str, Any]
    current: dict[str, Any]


class DiscoveryEntry(_Doc):
    server: dict[str, Any]


class DiscoveryList(_Doc):
    servers: list[DiscoveryEntry]
    metadata: dict[str, Any]


_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (Error, Server, ServerList, Removed, Health, ToolDiff, DiscoveryEntry, DiscoveryList, HealthState)
}
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _params(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


@functools.cache
def build() -> dict[str, Any]:
    """The whole document (built once per process; do not mutate it)."""
    schemas: dict[str, Any] = {}
    server_config = TypeAdapter(ServerConfig).json_schema(ref_template=_REF)
    schemas.update(server_config.pop("$defs", {}))
    schemas["ServerConfig"] = server_config
    for name, model in _MODELS.items():
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    errors = {str(code): _json(_ref("Error"), text) for code, text in _ERRORS.items()}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler,
            "parameters": _params(route.path),
            "responses": {
                "201" if route.handler == "register" else "200": _json(
                    _ref(route.response) if route.response in _MODELS else {"type": "object"}
                ),
                **errors,
            },
        }
        if route.body == "partial":
            partial = {"type": "object", "description": "Fields of ServerConfig to change; the rest are kept"}
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": partial}}}
        elif route.body == "server":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref("ServerConfig")}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    for method, path, summary, content_type in STATIC_ROUTES:
        schema = {"type": "string"} if content_type == "text/plain" else {"type": "object"}
        paths.setdefault(path, {})[method.lower()] = {
            "summary": summary,
            "parameters": _params(path),
            "responses": {"200": {"description": "OK", "content": {content_type: {"schema": schema}}}},
        }
    for path, summary, response in DISCOVERY_ROUTES:
        paths.setdefault(path, {})["get"] = {
            "summary": summary,
            "parameters": _params(path),
            "responses": {"200": _json(_ref(response)), "404": _json(_ref("Error"), "No such server")},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Toolway admin API", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


_ERRORS = {
    400: "The body or a parameter is invalid (`field` names it)",
    404: "No such server or tool",
    409: "Conflict: the name is taken, the server is file-managed, or nothing to approve",
    503: "The store failed",
}
