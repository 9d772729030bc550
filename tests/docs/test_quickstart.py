"""The README's quick start works as written: `make run`'s program serves the example servers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from mcp import Client

ROOT = Path(__file__).resolve().parents[2]
NOTES = str(ROOT / "examples/servers/notes_stdio.py")


async def _ready_url(stdout: asyncio.StreamReader) -> str:
    while line := await stdout.readline():
        text = line.decode()
        if text.startswith("Toolway is ready"):
            return text.rsplit(" ", 1)[1].strip()
    raise AssertionError("the gateway exited before it was ready")


async def _run_until_ready(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        return proc, await _ready_url(proc.stdout)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def test_make_run_serves_the_example_servers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WEATHER_PORT": "0",
        "TOOLWAY_LISTEN__PORT": "0",
        "TOOLWAY_ADMIN__PORT": "0",
        "TOOLWAY_STORE": f"sqlite:///{tmp_path / 'toolway.db'}",
    }
    proc, url = await _run_until_ready([sys.executable, "examples/quickstart.py"], env)
    try:
        children = _children_of(proc.pid)
        assert len(children) == 2  # the weather server and the notes server
        async with Client(url, mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"weather__forecast", "weather__current", "notes__add_note", "notes__list_notes"} <= names
            added = await client.call_tool("notes__add_note", {"title": "t", "body": "b"})
            assert not added.is_error
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0
    assert not [child for child in children if _alive(child)]


def _alive(pid: int) -> bool:
    """True for a running process; a zombie awaiting its reaper counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_toolway_serve_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "toolway.yaml"
    config.write_text(
        "listen: {port: 0}\nadmin: {port: 0}\n"
        f"store: sqlite:///{tmp_path / 'toolway.db'}\n"
        "servers:\n"
        f"  - {{name: notes, transport: stdio, command: [{sys.executable!r}, {NOTES!r}]}}\n"
    )
    toolway = str(Path(sys.executable).parent / "toolway")
    proc, url = await _run_until_ready([toolway, "serve", "--config", str(config)], dict(os.environ))
    try:
        async with Client(url, mode="2026-07-28") as client:
            assert "notes__read_note" in {t.name for t in (await client.list_tools()).tools}
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0


async def test_serve_reports_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "toolway.yaml"
        config.write_text(
            f"listen: {{port: {port}}}\nadmin: {{enabled: false}}\nstore: sqlite:///{tmp_path / 'x.db'}\n"
        )
        toolway = str(Path(sys.executable).parent / "toolway")
        proc = await asyncio.create_subprocess_exec(
            toolway,
            "serve",
            "-c",
            str(config),
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
