"""``toolway keys create|list|revoke``: API keys in the store, bound to an agent identity.

A new key is printed once and only its SHA-256 is kept. After a create or revoke the
command tells every replica sharing the config's Redis state backend to reload its keys
(`state.backend: redis`, docs/state.md), and asks the gateway at the admin port from the
config (or `--admin-url`) to reload now (`POST /admin/keys/reload`, which tells the other
replicas too); when none hears, a running gateway notices within `auth.api_keys.reload_seconds`.

Exit codes: 0 ok, 1 the store cannot be used, 2 bad usage or config, 3 no such key to revoke.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from toolway.auth.key_store import KeyStore
from toolway.cli.admin_client import AdminError, admin_address, request_json
from toolway.config import ConfigError, GatewayConfig, load_config
from toolway.config.auth import AuthConfig
from toolway.registry.store import StoreError
from toolway.state.backend import StateUnavailable
from toolway.state.events import KeysChanged
from toolway.state.redis_backend import shown_url
from toolway.state.shared import announce_once

EXIT_STORE, EXIT_USAGE, EXIT_MISSING = 1, 2, 3
NOTIFY_SECONDS = 2.0
T = TypeVar("T")

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)

ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="TOOLWAY_CONFIG", help="The YAML config file.", show_default=True),
]
AdminUrl = Annotated[
    str | None,
    typer.Option("--admin-url", help="The gateway's admin URL to notify (default: admin.host/port from the config)."),
]
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@keys_app.command("create")
def create_command(
    subject: Annotated[str, typer.Option("--subject", help="The agent identity the key proves.")],
    config: ConfigPath = Path("toolway.yaml"),
    team: Annotated[str | None, typer.Option("--team", help="The agent's team (auth.teams boundaries).")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="A role (repeatable).")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope, e.g. 'tools:call:web/*' (repeatable).")
    ] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Lifetime: 30d, 12h, 15m, 90s.")] = None,
    admin_url: AdminUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key and its record as JSON.")] = False,
) -> None:
    """Create a key bound to SUBJECT; print it once."""
    gateway = _load(config)
    expires_at = None
    if expires_in is not None:
        match = _DURATION.fullmatch(expires_in.strip())
        if match is None or int(match[1]) == 0:
            typer.echo(f"--expires-in {expires_in!r}: use a positive number and a unit, like 30d, 12h, 15m.", err=True)
            raise typer.Exit(EXIT_USAGE)
        expires_at = datetime.now(UTC) + timedelta(**{_UNITS[match[2]]: int(match[1])})
    key, record = _with_store(
        gateway,
        lambda store: store.create(
            subject, team=team, roles=tuple(role or ()), scopes=tuple(scope or ()), expires_at=expires_at
        ),
    )
    if as_json:
        typer.echo(json.dumps({"key": key, **record.to_json()}, indent=2))
    else:
        typer.echo(key)
        typer.echo(f"Key {record.id} for {subject}: store it now, it is not shown again.", err=True)
    _notify(gateway, admin_url)


@keys_app.command("list")
def list_command(
    config: ConfigPath = Path("toolway.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List keys (never the keys themselves): id, subject, team, scopes, expiry, revocation."""
    records = _with_store(_load(config), lambda store: store.all())
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    rows = [["ID", "SUBJECT", "TEAM", "SCOPES", "EXPIRES", "REVOKED"]]
    for r in records:
        data = r.to_json()
        rows.append(
            [
                r.id,
                r.subject,
                r.team or "-",
                " ".join(r.scopes) or "-",
                data["expires_at"] or "-",
                data["revoked_at"] or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def revoke_command(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `toolway keys list` shows it.")],
    config: ConfigPath = Path("toolway.yaml"),
    admin_url: AdminUrl = None,
) -> None:
    """Revoke a key: it stops working at once when the gateway is reachable, else within reload_seconds."""
    gateway = _load(config)
    if not _with_store(gateway, lambda store: store.revoke(key_id)):
        typer.echo(f"No unrevoked key with id {key_id!r}.", err=True)
        raise typer.Exit(EXIT_MISSING)
    typer.echo(f"Key {key_id} revoked.")
    _notify(gateway, admin_url)


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _with_store(gateway: GatewayConfig, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await KeyStore.open(gateway.store) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE) from None


def _notify(gateway: GatewayConfig, admin_url: str | None) -> None:
    """Ask the running gateways to reload their keys now; say so when they cannot be reached."""
    if gateway.state.backend == "redis":
        try:
            asyncio.run(announce_once(gateway.state, KeysChanged()))
            typer.echo(f"Told the gateways sharing {shown_url(gateway.state.url)} to reload their keys.", err=True)
        except StateUnavailable as exc:
            typer.echo(f"Could not tell the gateways through the state backend ({exc}).", err=True)
    admin_url = admin_url.rstrip("/") if admin_url else admin_address(gateway)
    interval = gateway.auth.api_keys.reload_seconds if isinstance(gateway.auth, AuthConfig) else None
    later = f"a running gateway picks this up within {interval:g} s" if interval else "a running gateway reloads soon"
    if admin_url is None:
        typer.echo(f"No admin URL to notify: {later}.", err=True)
        return
    try:
        loaded = request_json(admin_url, "POST", "/admin/keys/reload", timeout=NOTIFY_SECONDS).get("keys")
        typer.echo(f"The gateway at {admin_url} reloaded its keys ({loaded} active).", err=True)
    except AdminError as exc:
        typer.echo(f"The gateway at {admin_url} did not answer ({exc.message}): {later}.", err=True)
