"""The ``toolway`` command line, against real config files and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from toolway.cli.main import app
from toolway.registry import ServerRecord, Store, ToolRecord

CONFIG = """\
store: sqlite:///{db}
servers:
  - name: files
    transport: stdio
    command: [python, -m, some.server]
  - name: web
    transport: streamable-http
    url: http://127.0.0.1:9100/mcp
    enabled: false
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # TOOLWAY_* variables in the developer's shell would override the test configs.
    for name in list(os.environ):
        if name.startswith("TOOLWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "toolway.db"


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "toolway.yaml"
    path.write_text(CONFIG.format(db=db), encoding="utf-8")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def record(db: Path, *records: ServerRecord) -> None:
    async def write() -> None:
        async with await Store.open(f"sqlite:///{db}") as store:
            for item in records:
                await store.record_server(item)

    asyncio.run(write())


def files_record() -> ServerRecord:
    long = "Read a file from the workspace and return its contents, decoded as UTF-8 text when possible."
    return ServerRecord(
        name="files",
        transport="stdio",
        endpoint="python -m some.server",
        status="connected",
        era="2026-07-28",
        protocol_version="2026-07-28",
        server_info={"name": "demo-files", "version": "1.2.0"},
        capabilities={"tools": {}},
        last_error=None,
        tools=(
            ToolRecord("files", "read", "Read", f"{long}\nSecond line.", {"type": "object"}),
            ToolRecord("files", "stat", None, None, None),
        ),
    )


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "toolway"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in ("serve", "servers", "tools"):
        assert command in result.stdout
    assert "Run the gateway" in result.stdout


def test_servers_list_before_any_connection(config: Path) -> None:
    result = run("servers", "list", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "TRANSPORT", "ENDPOINT", "ENABLED", "STATUS"]
    assert lines[1].startswith("files ") and "never connected" in lines[1]
    assert lines[2].startswith("web ") and " no " in lines[2]


def test_servers_list_shows_recorded_state_and_hides_removed_servers(config: Path, db: Path) -> None:
    removed = ServerRecord("gone", "stdio", "x", "connected", None, None, None, None, None)
    record(db, files_record(), removed)

    result = run("servers", "list", "-c", str(config))
    assert result.exit_code == 0, result.output
    files_line = result.stdout.splitlines()[1]
    for expected in ("connected", "2026-07-28", "demo-files 1.2.0", "python -m some.server"):
        assert expected in files_line
    assert "gone" not in result.stdout


def test_servers_list_json(config: Path, db: Path) -> None:
    record(db, files_record())

    result = run("servers", "list", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    files, web = json.loads(result.stdout)
    assert files["name"] == "files"
    assert files["status"] == "connected"
    assert files["server_name"] == "demo-files"
    assert files["server_version"] == "1.2.0"
    assert files["tools"] == 2
    assert files["updated_at"].endswith("Z")
    assert web == {
        "name": "web",
        "transport": "streamable-http",
        "endpoint": "http://127.0.0.1:9100/mcp",
        "enabled": False,
        "status": "never connected",
        "era": None,
        "protocol_version": None,
        "server_name": None,
        "server_version": None,
        "tools": None,
        "updated_at": None,
        "last_error": None,
    }


def test_tools_list_table(config: Path, db: Path) -> None:
    record(db, files_record())

    result = run("tools", "list", "-c", str(config))
    assert result.exit_code == 0, result.output
    header, read, stat = result.stdout.splitlines()
    assert header.split() == ["NAME", "SERVER", "DESCRIPTION"]
    assert read.startswith("files__read ")
    assert read.endswith("…") and "Second line" not in read
    assert len(read.split("files", 2)[2].strip()) == 60
    assert stat.split() == ["files__stat", "files", "-"]


def test_tools_list_json(config: Path, db: Path) -> None:
    record(db, files_record())

    result = run("tools", "list", "-c", str(config), "--json", "--server", "files")
    assert result.exit_code == 0, result.output
    read, stat = json.loads(result.stdout)
    assert read["namespaced_name"] == "files__read"
    assert (read["server"], read["name"], read["title"]) == ("files", "read", "Read")
    assert read["description"].endswith("Second line.")
    assert read["inputSchema"] == {"type": "object"}
    assert stat["namespaced_name"] == "files__stat"


def test_tools_list_with_nothing_recorded_hints_at_serve(config: Path) -> None:
    result = run("tools", "list", "-c", str(config), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "toolway serve" in result.stderr


def test_tools_list_unknown_server_is_a_usage_error(config: Path) -> None:
    result = run("tools", "list", "-c", str(config), "--server", "nope")
    assert result.exit_code == 2
    assert "No server named 'nope'" in result.stderr


def test_config_path_from_environment(config: Path) -> None:
    result = run("servers", "list", "--json", env={"TOOLWAY_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == ["files", "web"]


@pytest.mark.parametrize("command", [["serve"], ["servers", "list"], ["tools", "list"]])
def test_bad_config_exits_2_with_the_message(tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: {port: 70000}\n", encoding="utf-8")

    result = run(*command, "-c", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: listen.port: Input should be less than or equal to 65535" in result.stderr
    assert result.stdout == ""


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = run("serve", "-c", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 2
    assert "absent.yaml: config file not found" in result.stderr


def test_unopenable_store_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    path = tmp_path / "toolway.yaml"
    path.write_text(f"store: sqlite:///{blocker}/toolway.db\n", encoding="utf-8")

    for command in (["servers", "list", "--json"], ["tools", "list"]):
        result = run(*command, "-c", str(path))
        assert result.exit_code == 1
        assert "cannot open the store at" in result.stderr
        assert result.stdout == ""
