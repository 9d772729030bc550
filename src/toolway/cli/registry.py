"""``toolway servers add|update|enable|disable|remove|health`` and ``toolway tools diff|approve``.

They talk to the running gateway's admin API (``--admin-url``; by default the admin
host and port of ``--config``'s file). Exit codes: 0 ok, 1 the gateway cannot be reached
or refused the change (404, 409, 503), 2 bad usage (a bad flag or file, or a 400).
"""

from __future__ import annotations

import json
import shlex
import urllib.parse
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from toolway.cli.admin_client import DEFAULT_ADMIN, AdminError, admin_base, request_json
from toolway.cli.admin_client import fail as _fail

EXIT_REFUSED = 1
EXIT_USAGE = 2
TIMEOUT_SECONDS = 60.0  # a removal waits for calls in flight (registry.drain_seconds)

ConfigPath = Annotated[
    Path, typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file (for the admin address).")
]
AdminUrl = Annotated[
    str | None,
    typer.Option(
        "--admin-url", envvar="TOOLWAY_ADMIN_URL", help="The gateway's admin listener, e.g. http://127.0.0.1:8081."
    ),
]
Name = Annotated[str, typer.Argument(help="The server's name.")]
ToolName = Annotated[str, typer.Argument(help="The namespaced tool name, server__tool.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


def add_commands(servers_app: typer.Typer, tools_app: typer.Typer) -> None:
    """Attach the registry commands to the CLI's `servers` and `tools` groups."""
    servers_app.command("add")(servers_add)
    servers_app.command("update")(servers_update)
    servers_app.command("enable")(servers_enable)
    servers_app.command("disable")(servers_disable)
    servers_app.command("remove")(servers_remove)
    servers_app.command("health")(servers_health)
    tools_app.command("diff")(tools_diff)
    tools_app.command("approve")(tools_approve)


def servers_add(
    name: Annotated[str | None, typer.Option(help="The server's name (namespace of its tools).")] = None,
    transport: Annotated[str | None, typer.Option(help="stdio, streamable-http, sse, websocket or auto.")] = None,
    url: Annotated[str | None, typer.Option(help="The server's URL (HTTP transports).")] = None,
    command: Annotated[str | None, typer.Option(help="The command line (stdio), split like a shell.")] = None,
    header: Annotated[list[str] | None, typer.Option(help="K=V, repeatable.")] = None,
    env: Annotated[list[str] | None, typer.Option(help="K=V for a stdio server, repeatable.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    owner: Annotated[str | None, typer.Option(help="The owning team.")] = None,
    description: Annotated[str | None, typer.Option(help="Shown by the discovery API.")] = None,
    version: Annotated[str | None, typer.Option(help="The registered version.")] = None,
    pinning: Annotated[str | None, typer.Option(help="enforce, warn or off.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Register without connecting.")] = False,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A server entry as JSON or YAML.")] = None,
    config: ConfigPath = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a server with the running gateway; it is connected at once."""
    body = _from_file(file) if file is not None else {}
    body |= _flags(name, transport, url, command, header, env, tag, owner, description, version, pinning)
    if disabled:
        body["enabled"] = False
    if not body.get("name"):
        _fail("give the server a --name (or a name in --file)", EXIT_USAGE)
    answer = _request("POST", "/admin/servers", _admin(admin_url, config), body)
    _show(answer, as_json, f"registered {answer.get('name')} ({answer.get('state')})")


def servers_update(
    name: Name,
    transport: Annotated[str | None, typer.Option(help="stdio, streamable-http, sse, websocket or auto.")] = None,
    url: Annotated[str | None, typer.Option(help="The server's URL (HTTP transports).")] = None,
    command: Annotated[str | None, typer.Option(help="The command line (stdio), split like a shell.")] = None,
    header: Annotated[list[str] | None, typer.Option(help="K=V, repeatable (replaces all headers).")] = None,
    env: Annotated[list[str] | None, typer.Option(help="K=V, repeatable (replaces the environment).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeatable (replaces the tags).")] = None,
    owner: Annotated[str | None, typer.Option(help="The owning team.")] = None,
    description: Annotated[str | None, typer.Option(help="Shown by the discovery API.")] = None,
    version: Annotated[str | None, typer.Option(help="The registered version.")] = None,
    pinning: Annotated[str | None, typer.Option(help="enforce, warn or off.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="The whole entry as JSON or YAML (replaces it).")
    ] = None,
    config: ConfigPath = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a server registered through the API (drained, then reconnected with the new config).

    With --file the entry is replaced; with flags only the given fields change.
    """
    base = _admin(admin_url, config)
    path = f"/admin/servers/{_quote(name)}"
    if file is not None:
        body = _from_file(file) | _flags(
            None, transport, url, command, header, env, tag, owner, description, version, pinning
        )
        answer = _request("PUT", path, base, body)
    else:
        changes = _flags(None, transport, url, command, header, env, tag, owner, description, version, pinning)
        if not changes:
            _fail("nothing to change: give some flags or --file", EXIT_USAGE)
        answer = _request("PATCH", path, base, changes)
    _show(answer, as_json, f"updated {name} ({answer.get('state')})")


def servers_enable(name: Name, config: ConfigPath = Path("toolway.yaml"), admin_url: AdminUrl = None) -> None:
    """Enable a server: it is connected and its tools are listed again."""
    answer = _request("POST", f"/admin/servers/{_quote(name)}/enable", _admin(admin_url, config))
    typer.echo(f"enabled {name} ({answer.get('state')})")


def servers_disable(name: Name, config: ConfigPath = Path("toolway.yaml"), admin_url: AdminUrl = None) -> None:
    """Disable a server: new calls are refused, calls in flight finish, then it is closed."""
    _request("POST", f"/admin/servers/{_quote(name)}/disable", _admin(admin_url, config))
    typer.echo(f"disabled {name}")


def servers_remove(name: Name, config: ConfigPath = Path("toolway.yaml"), admin_url: AdminUrl = None) -> None:
    """Deregister a server registered through the API, after its calls in flight finish."""
    answer = _request("DELETE", f"/admin/servers/{_quote(name)}", _admin(admin_url, config))
    drained = "" if answer.get("drained") else " (some calls were still in flight after registry.drain_seconds)"
    typer.echo(f"removed {name}{drained}")


def servers_health(
    name: Name,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many transitions, newest last.")] = 20,
    config: ConfigPath = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """A server's current health and its recent transitions."""
    answer = _request("GET", f"/admin/servers/{_quote(name)}/health?limit={limit}", _admin(admin_url, config))
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    current = answer.get("current") or {}
    typer.echo(f"{name}: {current.get('state', 'not watched')}" + _suffix(current.get("last_error")))
    for event in answer.get("history", []):
        typer.echo(f"  {event['at']}  {event['from']} -> {event['to']}" + _suffix(event.get("reason")))


def tools_diff(
    name: ToolName, config: ConfigPath = Path("toolway.yaml"), admin_url: AdminUrl = None, as_json: JsonFlag = False
) -> None:
    """How a tool's current definition differs from the approved (pinned) one."""
    answer = _request("GET", f"/admin/tools/{_quote(name)}/diff", _admin(admin_url, config))
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    typer.echo(f"{name}: {answer['status']}")
    for change in answer.get("changes", []):
        typer.echo(f"  {change['change']} {change['path'] or '/'}")
        if "approved" in change:
            typer.echo(f"    approved: {json.dumps(change['approved'])}")
        if "current" in change:
            typer.echo(f"    current:  {json.dumps(change['current'])}")


def tools_approve(name: ToolName, config: ConfigPath = Path("toolway.yaml"), admin_url: AdminUrl = None) -> None:
    """Approve a changed tool's current definition: it is pinned anew and served again."""
    answer = _request("POST", f"/admin/tools/{_quote(name)}/approve", _admin(admin_url, config))
    typer.echo(f"approved {name} (pinned {answer.get('pinned_hash', '')[:12]})")


def _flags(
    name: str | None,
    transport: str | None,
    url: str | None,
    command: str | None,
    header: list[str] | None,
    env: list[str] | None,
    tag: list[str] | None,
    owner: str | None,
    description: str | None,
    version: str | None,
    pinning: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in (
        ("name", name),
        ("transport", transport),
        ("url", url),
        ("owner", owner),
        ("description", description),
        ("version", version),
        ("pinning", pinning),
    ):
        if value is not None:
            body[key] = value
    if command is not None:
        body["command"] = shlex.split(command)
    if header:
        body["headers"] = _pairs(header, "--header")
    if env:
        body["env"] = _pairs(env, "--env")
    if tag:
        body["tags"] = list(tag)
    return body


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"{flag} {item!r}: expected KEY=VALUE", EXIT_USAGE)
        pairs[key] = value
    return pairs


def _from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        _fail(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", EXIT_USAGE)
    if not isinstance(data, dict):
        _fail(f"{path} must hold one server entry (an object)", EXIT_USAGE)
    return data


def _admin(admin_url: str | None, config: Path) -> str:
    return admin_base(config, admin_url, default=DEFAULT_ADMIN)


def _request(method: str, path: str, base: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        return request_json(base, method, path, body, timeout=TIMEOUT_SECONDS)
    except AdminError as exc:
        _fail(exc.message, EXIT_USAGE if exc.status == 400 else EXIT_REFUSED)


def _show(answer: dict[str, Any], as_json: bool, line: str) -> None:
    typer.echo(json.dumps(answer, indent=2) if as_json else line)


def _suffix(text: Any) -> str:
    return f"  ({text})" if text else ""


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
