"""The ``toolway`` command: run the gateway and inspect what it recorded.

Exit codes: 0 ok, 1 the store cannot be opened, 2 bad usage or config.
``--json`` output is the only thing written to stdout; hints and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from toolway.cli.audit import audit_app
from toolway.cli.keys import keys_app
from toolway.cli.policy import policy_app
from toolway.cli.registry import add_commands as registry_commands
from toolway.cli.stats import stats_command
from toolway.cli.traffic import drain_command, kill_command, revive_command, traffic_command, weight_command
from toolway.config import ConfigError, GatewayConfig, StdioServerConfig, load_config
from toolway.config.model import NAMESPACE_SEPARATOR
from toolway.registry import ServerRecord, Store, StoreError
from toolway.registry.entries import RegistryError, validate_server
from toolway.registry.records import Registration, RegistryRecords

EXIT_STORE = 1
EXIT_USAGE = 2
NEVER_CONNECTED = "never connected"
DESCRIPTION_WIDTH = 60
SERVER_COLUMNS = "NAME TRANSPORT ENDPOINT ENABLED STATUS ERA PROTOCOL UPSTREAM TOOLS UPDATED".split()

# Locals in tracebacks could print secrets from the config (headers, env), so keep them out.
app = typer.Typer(
    help="Toolway: one MCP endpoint for agents, many MCP servers behind it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
servers_app = typer.Typer(help="Inspect, register and change upstream servers.", no_args_is_help=True)
tools_app = typer.Typer(help="Inspect recorded tools; review and approve changed ones.", no_args_is_help=True)
app.add_typer(servers_app, name="servers")
app.add_typer(tools_app, name="tools")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(policy_app, name="policy")
app.command("stats")(stats_command)
app.command("kill")(kill_command)  # traffic control through the admin API (cli/traffic.py)
app.command("revive")(revive_command)
app.command("traffic")(traffic_command)
servers_app.command("weight")(weight_command)
servers_app.command("drain")(drain_command)
registry_commands(servers_app, tools_app)  # add/update/enable/disable/remove/health; tools diff/approve
ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file.", show_default=True),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")]


def main() -> None:
    """Run the ``toolway`` command line (the console script's entry point)."""
    app()


@app.command("serve")
def serve_command(
    config: ConfigPath = Path("toolway.yaml"),
    host: Annotated[str | None, typer.Option(help="Override listen.host.")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Override listen.port.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Gateway processes sharing the port (docs/performance.md).")
    ] = 1,
) -> None:
    """Run the gateway until interrupted."""
    gateway = _load(config)
    updates = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    if updates:
        gateway = gateway.model_copy(update={"listen": gateway.listen.model_copy(update=updates)})
    if workers > 1:
        from toolway.workers import serve_workers

        raise typer.Exit(serve_workers(gateway, workers))
    # Imported here so the inspection commands start without the server stack.
    from toolway.lifetime import serve

    raise typer.Exit(serve(gateway))


@app.command("stdio")
def stdio_command(
    config: ConfigPath = Path("toolway.yaml"),
    server: Annotated[str | None, typer.Option(help="Serve only this server, names unchanged.")] = None,
) -> None:
    """Be an MCP server on stdin/stdout, for clients that only launch local processes."""
    gateway = _load(config)
    if server is not None and gateway.server(server) is None:
        typer.echo(f"No server named {server!r} in {config}.", err=True)
        raise typer.Exit(2)
    from toolway.lifetime import serve_stdio

    raise typer.Exit(serve_stdio(gateway, server))


@servers_app.command("list")
def servers_list(config: ConfigPath = Path("toolway.yaml"), as_json: JsonFlag = False) -> None:
    """List configured servers (and those registered through the admin API) and their last recorded state.

    Servers the store has never seen show the status "never connected".
    """
    gateway = _load(config)
    records = _recorded(gateway)
    servers = [*gateway.servers, *_registered(gateway)]
    rows = [_server_row(server, records.get(server.name)) for server in servers]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"No servers are configured in {config}.", err=True)
        return
    _print_table(
        SERVER_COLUMNS,
        [
            [
                row["name"],
                row["transport"],
                row["endpoint"],
                "yes" if row["enabled"] else "no",
                row["status"],
                row["era"],
                row["protocol_version"],
                " ".join(part for part in (row["server_name"], row["server_version"]) if part) or None,
                row["tools"],
                row["updated_at"],
            ]
            for row in rows
        ],
    )


@tools_app.command("list")
def tools_list(
    config: ConfigPath = Path("toolway.yaml"),
    as_json: JsonFlag = False,
    server: Annotated[str | None, typer.Option("--server", help="Only this server's tools.")] = None,
) -> None:
    """List the tools recorded for the configured servers, by namespaced name."""
    gateway = _load(config)
    if server is not None and gateway.server(server) is None:
        typer.echo(f"No server named {server!r} in {config}.", err=True)
        raise typer.Exit(EXIT_USAGE)
    wanted = [server] if server is not None else [s.name for s in gateway.servers]
    records = _recorded(gateway)
    tools = [tool for name in sorted(wanted) if name in records for tool in records[name].tools]
    if not tools:
        typer.echo(
            "No tools recorded yet: the gateway records each server's tools when it connects "
            f"to it (run `toolway serve --config {config}`).",
            err=True,
        )
    if as_json:
        objects = [
            {
                "namespaced_name": f"{tool.server}{NAMESPACE_SEPARATOR}{tool.name}",
                "server": tool.server,
                "name": tool.name,
                "title": tool.title,
                "description": tool.description,
                "inputSchema": tool.input_schema,
            }
            for tool in tools
        ]
        typer.echo(json.dumps(objects, indent=2))
    elif tools:
        _print_table(
            ["NAME", "SERVER", "DESCRIPTION"],
            [
                [f"{tool.server}{NAMESPACE_SEPARATOR}{tool.name}", tool.server, _summary(tool.description)]
                for tool in tools
            ],
        )


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _registered(gateway: GatewayConfig) -> list[Any]:
    """Servers registered through the admin API (stored), except those the file shadows."""

    async def read() -> list[Registration]:
        async with await Store.open(gateway.store) as store:
            return await RegistryRecords(store).registrations()

    try:
        rows = asyncio.run(read())
    except StoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE) from None
    servers = []
    for row in rows:
        if row.managed_by == "api" and gateway.server(row.name) is None:
            with contextlib.suppress(RegistryError):
                servers.append(validate_server({**row.config, "enabled": row.enabled}))
    return servers


def _recorded(gateway: GatewayConfig) -> dict[str, ServerRecord]:
    """The store's records by server name; exits 1 if the store cannot be read."""

    async def read() -> list[ServerRecord]:
        async with await Store.open(gateway.store) as store:
            return await store.list_servers()

    try:
        return {record.name: record for record in asyncio.run(read())}
    except StoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE) from None


def _server_row(server: Any, record: ServerRecord | None) -> dict[str, Any]:
    if isinstance(server, StdioServerConfig):
        endpoint = " ".join(server.command)
    else:
        endpoint = server.url
    info = (record.server_info if record else None) or {}
    return {
        "name": server.name,
        "transport": server.transport,
        "endpoint": endpoint,
        "enabled": server.enabled,
        "status": record.status if record else NEVER_CONNECTED,
        "era": record.era if record else None,
        "protocol_version": record.protocol_version if record else None,
        "server_name": info.get("name"),
        "server_version": info.get("version"),
        "tools": len(record.tools) if record else None,
        "updated_at": _timestamp(record.updated_at) if record else None,
        "last_error": record.last_error if record else None,
    }


def _timestamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _summary(description: str | None) -> str | None:
    lines = (description or "").strip().splitlines()
    if not lines:
        return None
    first = lines[0].strip()
    return first if len(first) <= DESCRIPTION_WIDTH else first[: DESCRIPTION_WIDTH - 1] + "…"


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [headers] + [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
