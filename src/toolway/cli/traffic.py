"""Traffic control from the command line, through the running gateway's admin API.

    toolway kill server|tool NAME [--undo]     switch a server or a tool (server__tool) off, or on again
    toolway revive server|tool NAME            the same as --undo
    toolway servers weight NAME v2=10 [v1=90]  version weights in percent (canary, blue/green); none: clear
    toolway servers drain NAME REPLICA [--undo]
    toolway traffic [--json]                   kill switches, weights and every replica's health

The admin API's address comes from `--admin-url`, else from the config's `admin`
host and port. Exit codes: 0 ok, 1 the gateway cannot be reached, 2 bad usage or
a change the gateway refused (the message says why).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from toolway.cli.admin_client import AdminError, admin_base, request_json

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
TIMEOUT_SECONDS = 10.0


class Kind(enum.StrEnum):
    server = "server"
    tool = "tool"


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file (for the admin address).")
]
AdminUrl = Annotated[
    str | None,
    typer.Option("--admin-url", envvar="TOOLWAY_ADMIN_URL", help="The admin API, e.g. http://127.0.0.1:8081."),
]


def kill_command(
    kind: Annotated[Kind, typer.Argument(help="server, or tool")],
    name: Annotated[str, typer.Argument(help="The server's name, or the tool's as agents see it (server__tool).")],
    undo: Annotated[bool, typer.Option("--undo", help="Switch it on again.")] = False,
    config: ConfigOption = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
) -> None:
    """Switch a server or one tool off at once (the next call fails with a clear error); --undo to revive."""
    answer = _request(config, admin_url, "DELETE" if undo else "POST", "/admin/kill", {kind.value: name})
    state = "off" if answer.get("killed") else "on"
    note = "" if answer.get("changed") else " (it already was)"
    typer.echo(f"{kind.value} {name} is {state}{note}")


def revive_command(
    kind: Annotated[Kind, typer.Argument(help="server, or tool")],
    name: Annotated[str, typer.Argument(help="The server's name, or the tool's (server__tool).")],
    config: ConfigOption = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
) -> None:
    """Undo `toolway kill`."""
    kill_command(kind, name, undo=True, config=config, admin_url=admin_url)


def weight_command(
    name: Annotated[str, typer.Argument(help="The server.")],
    weights: Annotated[list[str] | None, typer.Argument(help="VERSION=PERCENT, e.g. v2=10; none clears them.")] = None,
    config: ConfigOption = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
) -> None:
    """Set the share of calls each version of a server gets (canary, blue/green)."""
    body: dict[str, int] = {}
    for item in weights or []:
        version, sep, value = item.partition("=")
        if not sep or not version or not value.strip().isdigit():
            _fail(EXIT_USAGE, f"weights are VERSION=PERCENT (e.g. v2=10), got {item!r}")
        body[version] = int(value)
    answer = _request(config, admin_url, "POST", f"/admin/servers/{name}/weights", body)
    shares = ", ".join(f"{v} {s * 100:g}%" for v, s in sorted(answer.get("shares", {}).items()))
    typer.echo(f"{name}: {shares or 'no versions'}")


def drain_command(
    name: Annotated[str, typer.Argument(help="The server.")],
    replica: Annotated[str, typer.Argument(help="The replica's id (see `toolway traffic`).")],
    undo: Annotated[bool, typer.Option("--undo", help="Take it back into rotation.")] = False,
    config: ConfigOption = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
) -> None:
    """Stop sending new calls to one replica (calls in flight finish); --undo to restore it."""
    path = f"/admin/servers/{name}/replicas/{replica}/drain"
    answer = _request(config, admin_url, "DELETE" if undo else "POST", path, None)
    if undo:
        typer.echo(f"{name} replica {replica} is back in rotation")
    else:
        done = "drained" if answer.get("drained") else f"draining, {answer.get('inflight', 0)} call(s) in flight"
        typer.echo(f"{name} replica {replica} is {done}")


def traffic_command(
    config: ConfigOption = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON state.")] = False,
) -> None:
    """Kill switches, version weights and every replica's health, from the running gateway."""
    state = _request(config, admin_url, "GET", "/admin/traffic", None)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    killed = state.get("killed", {})
    shared = state.get("state")
    if isinstance(shared, dict):
        step = "in sync" if shared.get("synced") else "unreachable: this gateway serves from its own copy"
        typer.echo(f"state backend: {shared.get('backend')} ({step})")
    typer.echo(f"killed servers: {', '.join(killed.get('servers', [])) or '-'}")
    typer.echo(f"killed tools: {', '.join(killed.get('tools', [])) or '-'}")
    for server, info in state.get("servers", {}).items():
        shares = ", ".join(f"{v} {s * 100:g}%" for v, s in sorted(info.get("shares", {}).items()))
        typer.echo(f"{server} ({info.get('strategy')}; {shares})")
        for r in info.get("replicas", []):
            typer.echo(
                f"  {r['id']:<8} {r['health']:<11} inflight {r['inflight']:<4} {r['version']:<6} {r['endpoint']}"
            )


def _request(config: Path, admin_url: str | None, method: str, path: str, body: Any) -> dict[str, Any]:
    base = admin_base(config, admin_url)
    try:
        return request_json(base, method, path, body, timeout=TIMEOUT_SECONDS)
    except AdminError as exc:
        if exc.status is None:
            _fail(EXIT_UNREACHABLE, exc.message)
        _fail(EXIT_USAGE, f"the gateway refused: {exc.message}")


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)
