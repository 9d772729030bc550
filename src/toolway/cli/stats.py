"""``toolway stats``: ask a running gateway's admin listener for its per-server and per-tool summary.

Exit codes: 0 ok, 1 the gateway cannot be reached (not running, admin listener off),
2 bad usage or config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from toolway.cli.admin_client import AdminError, admin_address, fail, request_json
from toolway.config import ConfigError, GatewayConfig, load_config

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
TIMEOUT_SECONDS = 10.0
COLUMNS = ["CALLS", "ERRORS", "ERROR%", "P50 ms", "P95 ms", "P99 ms"]


def stats_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file.")
    ] = Path("toolway.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary instead of tables.")] = False,
) -> None:
    """Calls, errors and p50/p95/p99 latency per server and per tool, from the running gateway."""
    try:
        gateway = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    summary = fetch_stats(gateway, config)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    window = summary.get("window_seconds", 0)
    servers, tools = summary.get("servers", []), summary.get("tools", [])
    if not servers and not tools:
        typer.echo(f"No calls in the last {window:g} s.", err=True)
        return
    typer.echo(f"Last {window:g} s")
    _table(["SERVER", *COLUMNS], [[row["server"], *_numbers(row)] for row in servers])
    if tools:
        typer.echo("")
        _table(["TOOL", *COLUMNS], [[row["tool"], *_numbers(row)] for row in tools])


def fetch_stats(gateway: GatewayConfig, path: Path) -> dict[str, Any]:
    """GET /admin/stats from the gateway that `gateway` configures; exits 1 if it cannot be reached."""
    base = admin_address(gateway)
    if base is None:
        fail(f"the admin listener of {path} is disabled or on port 0 (admin.enabled, admin.port)", EXIT_UNREACHABLE)
    try:
        return request_json(base, "GET", "/admin/stats", timeout=TIMEOUT_SECONDS)
    except AdminError as exc:
        hint = f" Start it with `toolway serve --config {path}`." if exc.status is None else ""
        fail(exc.message + hint, EXIT_UNREACHABLE)


def _numbers(row: dict[str, Any]) -> list[str]:
    return [
        str(row["calls"]),
        str(row["errors"]),
        f"{row['error_rate'] * 100:.1f}",
        f"{row['p50_ms']:.1f}",
        f"{row['p95_ms']:.1f}",
        f"{row['p99_ms']:.1f}",
    ]


def _table(headers: list[str], rows: list[list[str]]) -> None:
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        # Names left, numbers right.
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        typer.echo("  ".join(parts).rstrip())
