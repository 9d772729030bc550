"""``toolway servers add|update|enable|disable|remove`` against a running gateway's admin API."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
from pathlib import Path

from typer.testing import CliRunner

from toolway.cli.main import app
from toolway.sessions.upstream import State
from toolway.testing import running_gateway, stdio_upstream_command, wait_for_state


async def cli(*args: str) -> tuple[int, str]:
    # In a thread: the CLI blocks on HTTP to the gateway, which runs on this event loop.
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_register_change_and_remove_from_the_command_line(tmp_path: Path) -> None:
    entry = tmp_path / "server.yaml"
    entry.write_text(f"name: fromfile\ntransport: stdio\ncommand: {stdio_upstream_command('fromfile')}\n")
    async with running_gateway(servers=[], store_dir=tmp_path) as gw:
        admin = ["--admin-url", gw.admin_url or ""]
        command = shlex.join(stdio_upstream_command("g"))
        code, out = await cli("servers", "add", "--name", "g", "--transport", "stdio", "--command", command, *admin)
        assert code == 0 and "registered g" in out, out
        code, out = await cli("servers", "add", "--file", str(entry), "--tag", "yaml", *admin)
        assert code == 0, out
        await wait_for_state(gw.gateway, "fromfile", State.READY)
        assert gw.gateway.registry.config_of("fromfile").tags == ["yaml"]  # type: ignore[union-attr]

        code, out = await cli("servers", "update", "g", "--owner", "team-x", *admin)
        assert code == 0, out
        assert gw.gateway.registry.config_of("g").owner == "team-x"  # type: ignore[union-attr]
        assert (await cli("servers", "disable", "g", *admin))[0] == 0
        assert "g" not in gw.gateway.manager.connections
        assert (await cli("servers", "enable", "g", *admin))[0] == 0
        await wait_for_state(gw.gateway, "g", State.READY)
        config = tmp_path / "toolway.yaml"
        config.write_text(f"store: {gw.config.store}\n")  # no servers in the file: both come from the API
        await gw.gateway.registry_settled()
        code, out = await cli("servers", "list", "--config", str(config), "--json")
        assert code == 0 and {row["name"] for row in json.loads(out)} == {"g", "fromfile"}, out
        code, out = await cli("servers", "remove", "g", *admin)
        assert code == 0 and "removed g" in out
        assert "g" not in gw.gateway.registry.entries

        # Refusals name the problem.
        code, out = await cli("servers", "add", "--transport", "stdio", *admin)
        assert code == 2 and "--name" in out
        code, out = await cli("servers", "add", "--name", "Bad!", "--transport", "stdio", "--command", "x", *admin)
        assert code == 2 and "name:" in out
        code, out = await cli(
            "servers", "add", "--name", "h", "--transport", "stdio", "--command", "x", "--env", "NOPE", *admin
        )
        assert code == 2 and "KEY=VALUE" in out
        code, out = await cli("servers", "remove", "nobody", *admin)
        assert code == 1 and "no server named 'nobody'" in out


async def test_a_gateway_that_is_not_running_is_named(tmp_path: Path) -> None:
    port = closed_port()
    config = tmp_path / "toolway.yaml"
    config.write_text(f"admin: {{host: 127.0.0.1, port: {port}}}\nstore: sqlite:///{tmp_path}/t.db\n")
    code, out = await cli("servers", "enable", "x", "--config", str(config))
    assert code == 1
    assert f"http://127.0.0.1:{port}" in out and "Is the gateway running?" in out
