"""``toolway audit verify|query|export``: read the audit log the gateway keeps in its store.

Exit codes: 0 ok (for ``verify``: the chain is intact), 1 the store cannot be read,
2 bad usage or config, 3 the chain is broken (the message names the first bad row).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from toolway.config import ConfigError, GatewayConfig, load_config
from toolway.registry.audit_store import AuditRow, AuditStore, parse_since
from toolway.registry.store import StoreError

EXIT_STORE, EXIT_USAGE, EXIT_BROKEN = 1, 2, 3
COLUMNS = ["ID", "AT", "PRINCIPAL", "METHOD", "TARGET", "TRANSPORT", "OUTCOME", "CODE", "REQUEST"]
T = TypeVar("T")

audit_app = typer.Typer(help="The tamper-evident audit log: verify, query, export.", no_args_is_help=True)

ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file.", show_default=True),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only records at or after this ISO 8601 time (UTC unless zoned).")
]


@audit_app.command("verify")
def verify_command(config: ConfigPath = Path("toolway.yaml")) -> None:
    """Check the hash chain: exit 0 when intact, 3 naming the first edited or deleted row."""
    checked, broken = _with_store(config, lambda store: store.verify())
    if broken is not None:
        typer.echo(f"Audit chain broken at row {broken.row_id}: {broken.reason}.", err=True)
        raise typer.Exit(EXIT_BROKEN)
    typer.echo(f"Audit chain intact: {checked} rows.")


@audit_app.command("query")
def query_command(
    config: ConfigPath = Path("toolway.yaml"),
    principal: Annotated[str | None, typer.Option("--principal", help="Only this caller's records.")] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="Only this namespaced tool (or prompt, or URI).")] = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the most recent N.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List audit records, oldest first."""
    since_at = _since(since)
    rows = _with_store(config, lambda store: store.query(principal=principal, target=tool, since=since_at, limit=limit))
    if as_json:
        typer.echo(json.dumps([row.to_json() for row in rows], indent=2))
        return
    if not rows:
        typer.echo("No audit records match.", err=True)
        return
    _print_table(rows)


@audit_app.command("export")
def export_command(config: ConfigPath = Path("toolway.yaml"), since: SinceOption = None) -> None:
    """Print every record, hashes included, as JSON lines (for a SIEM), oldest first."""
    since_at = _since(since)

    async def export(store: AuditStore) -> int:
        count = 0
        async for row in store.rows(since_at):
            typer.echo(json.dumps(row.to_json(), separators=(",", ":")))
            count += 1
        return count

    _with_store(config, export)


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError:
        typer.echo(f"--since: {value!r} is not an ISO 8601 date or time (e.g. 2026-11-29T08:00:00Z).", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _with_store(path: Path, use: Callable[[AuditStore], Awaitable[T]]) -> T:
    """Open the config's store, run `use` on its audit table; exits 1 or 2 on failure."""
    try:
        gateway: GatewayConfig = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None

    async def run() -> T:
        async with await AuditStore.open(gateway.store) as store:
            return await use(store)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE) from None


def _print_table(rows: list[AuditRow]) -> None:
    cells = [COLUMNS] + [
        [
            str(row.id),
            row.entry.at,
            row.entry.principal or "-",
            row.entry.method,
            row.entry.target or "-",
            row.entry.transport,
            row.entry.outcome,
            "-" if row.entry.error_code is None else str(row.entry.error_code),
            row.entry.request_id,
        ]
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for row in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
