"""``toolway stats``: ask a running gateway's admin listener for its per-server and per-tool summary.

Exit codes: 0 ok, 1 the gateway cannot be reached (not running, admin listener off),
2 bad usage or config.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from toolway.config import ConfigError, GatewayConfig, load_config

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
TIMEOUT_SECONDS = 10.0
COLUMNS = ["CALLS", "ERRORS", "ERROR%", "P50 ms", "P95 ms", "P99 ms"]
# A listener bound to every interface is reached on loopback.
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


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
    if not gateway.admin.enabled:
        _unreachable(f"the admin listener is disabled in {path} (admin.enabled: false)")
    host = _ANY.get(gateway.admin.host, gateway.admin.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{gateway.admin.port}/admin/stats"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            body: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        _unreachable(f"the admin listener at {url} answered HTTP {exc.code}: is it a Toolway gateway?")
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        _unreachable(
            f"cannot reach the gateway's admin listener at {url} ({reason}). "
            f"Is the gateway running? Start it with `toolway serve --config {path}`."
        )
    except ValueError:
        _unreachable(f"the admin listener at {url} did not answer with JSON: is it a Toolway gateway?")
    if not isinstance(body, dict):
        _unreachable(f"the admin listener at {url} answered with something other than a summary")
    return body


def _unreachable(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(EXIT_UNREACHABLE)


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
