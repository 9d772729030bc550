"""One server entry of the registry: validated from JSON, stored, shown; and the registry's errors.

The admin API's errors carry their HTTP status (`status`) and the offending field.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from toolway.config.model import HttpServerConfig, ServerConfig, StdioServerConfig

AnyServer = StdioServerConfig | HttpServerConfig
SERVER: TypeAdapter[AnyServer] = TypeAdapter(ServerConfig)
REDACTED = "<redacted>"
_TAGS = ("stdio", "streamable-http", "sse", "websocket", "auto")


class RegistryError(Exception):
    """A registry operation refused; `status` is its HTTP status, `field` the offending field."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(RegistryError):
    status = 404


class Conflict(RegistryError):
    status = 409


class Unavailable(RegistryError):
    status = 503


def validate_server(body: Any) -> AnyServer:
    """A server config entry from JSON. Raises `RegistryError` naming the first bad field."""
    if not isinstance(body, dict):
        raise RegistryError("the body must be a JSON object describing one server")
    try:
        return SERVER.validate_python(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in _TAGS:
            loc = loc[1:]  # the union's tag, not a field
        field = ".".join(loc) or None
        raise RegistryError(f"{field or 'server'}: {error['msg']}", field) from None


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A config entry without secrets: header and environment values are hidden."""
    shown = dict(config)
    for key in ("headers", "env"):
        if isinstance(shown.get(key), dict):
            shown[key] = dict.fromkeys(shown[key], REDACTED)
    return shown


def dump(server: AnyServer) -> dict[str, Any]:
    return server.model_dump(mode="json", exclude_defaults=True) | {"transport": server.transport}
