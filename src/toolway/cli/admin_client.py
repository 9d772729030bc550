"""The CLI's way to a running gateway: its admin listener's address, and JSON requests to it.

Commands that change or read a running gateway (`servers add`, `kill`, `stats`, …) all go
through here, so they find the gateway the same way (`--admin-url`, else the config's
`admin.host`/`admin.port`) and fail with the same kind of message. Each command keeps its
own exit codes: it catches `AdminError` and decides.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import typer

from toolway.config import ConfigError, GatewayConfig, load_config

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
DEFAULT_ADMIN = "http://127.0.0.1:8081"
# The admin API token the CLI sends, when the gateway asks for one (admin.token_env).
TOKEN_ENV = "TOOLWAY_ADMIN_TOKEN"
# A listener bound to every interface is reached on loopback.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class AdminError(Exception):
    """The admin API could not be used; `status` is the HTTP status it answered, None if it did not."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def admin_address(gateway: GatewayConfig) -> str | None:
    """The URL of `gateway`'s admin listener; None when it is off or on an ephemeral port."""
    if not gateway.admin.enabled or gateway.admin.port == 0:
        return None
    host = _ANY.get(gateway.admin.host, gateway.admin.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{gateway.admin.port}"


def admin_base(config: Path, admin_url: str | None, *, default: str | None = None) -> str:
    """`--admin-url`, else the admin listener the config file names (else `default`, if the file is missing).

    Exits 2 when the config cannot be loaded and 1 when its admin listener is off.
    """
    if admin_url:
        return admin_url.rstrip("/")
    if default is not None and not config.exists():
        return default
    try:
        gateway = load_config(config)
    except ConfigError as exc:
        fail(f"{exc} (or pass --admin-url)", EXIT_USAGE)
    address = admin_address(gateway)
    if address is None:
        fail(f"the admin listener of {config} is disabled or on port 0: pass --admin-url", EXIT_UNREACHABLE)
    return address


def request_json(base: str, method: str, path: str, body: Any = None, *, timeout: float = 10.0) -> dict[str, Any]:
    """One request to the admin API; its JSON object answer.

    Raises:
        AdminError: the API refused (with its `error` message and the HTTP status), could not be
            reached, or did not answer with a JSON object.
    """
    url = base + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    token = os.environ.get(TOKEN_ENV)
    if token:  # the gateway's admin.token_env (docs/auth.md)
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: Any = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
        except ValueError:
            error = None
        reason = error.get("error") if isinstance(error, dict) else None
        raise AdminError(reason or f"the admin API at {url} answered HTTP {exc.code}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        message = f"cannot reach the gateway's admin API at {base} ({reason}). Is the gateway running?"
        raise AdminError(message) from None
    except ValueError:
        raise AdminError(f"the admin API at {url} did not answer with JSON: is it a Toolway gateway?") from None
    if not isinstance(answer, dict):
        raise AdminError(f"the admin API at {url} answered with something other than a JSON object")
    return answer


def fail(message: str, code: int) -> NoReturn:
    """Say what went wrong on stderr and exit with `code`."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)
