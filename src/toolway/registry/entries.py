"""One server entry of the registry: validated from JSON, stored, shown; and the registry's errors.

The admin API's errors carry their HTTP status (`status`) and the offending field.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretBytes, SecretStr, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

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
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field = "transport"  # the tag that picks the server model
        raise RegistryError(f"{field or 'server'}: {error['msg']}", field) from None


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A config entry without secrets: header and environment values, and every inline secret
    of `credentials` (`{"value": ...}`, a client secret), are hidden."""
    shown = dict(config)
    for key in ("headers", "env"):
        if isinstance(shown.get(key), dict):
            shown[key] = dict.fromkeys(shown[key], REDACTED)
    if "credentials" in shown:
        shown["credentials"] = _hide_values(shown["credentials"])
    return shown


def _hide_values(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: REDACTED if k == "value" else _hide_values(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_hide_values(v) for v in node]
    return node


def dump(server: AnyServer) -> dict[str, Any]:
    """The entry as stored: JSON, defaults left out, secrets as given (pydantic's JSON mode
    would mask them as "**********", and a restored server could not authenticate)."""
    raw = _reveal(server.model_dump(mode="python", exclude_defaults=True))
    return to_jsonable_python(raw) | {"transport": server.transport}  # type: ignore[no-any-return]


def _reveal(node: Any) -> Any:
    if isinstance(node, SecretStr | SecretBytes):
        value = node.get_secret_value()
        return value.decode() if isinstance(value, bytes) else value
    if isinstance(node, dict):
        return {k: _reveal(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_reveal(v) for v in node]
    return node
