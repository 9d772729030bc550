"""What the gateway records (the registry's first form) and what it logs per call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from mcp import Client

from toolway.sessions.upstream import State
from toolway.testing import RunningGateway, http_upstream, running_gateway, wait_for_state
from toolway.testing.admin import AdminClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    toolway = str(Path(sys.executable).parent / "toolway")
    done = subprocess.run([toolway, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr  # say why, rather than fail later on empty output
    return done


async def test_store_records_each_server_and_its_tools(gateway: RunningGateway, tmp_path: Path) -> None:
    await gateway.gateway.registry_settled()
    config = tmp_path / "toolway.yaml"
    config.write_text(gateway.config.model_dump_json())  # JSON is YAML
    servers = json.loads(_cli("servers", "list", "--config", str(config), "--json").stdout)
    by_name = {s["name"]: s for s in servers}
    assert by_name["alpha"]["status"] == "connected"
    assert by_name["alpha"]["era"] == "2026-07-28"
    assert by_name["beta"]["era"] == "handshake"
    assert by_name["beta"]["protocol_version"] == "2025-11-25"
    assert by_name["gamma"]["transport"] == "stdio"
    assert {s["tools"] for s in servers} == {21}
    assert by_name["alpha"]["server_name"] == "alpha"

    tools = json.loads(_cli("tools", "list", "--config", str(config), "--json").stdout)
    names = {t["namespaced_name"] for t in tools}
    assert {"alpha__echo", "beta__add", "gamma__whoami"} <= names
    echo = next(t for t in tools if t["namespaced_name"] == "gamma__echo")
    assert echo["inputSchema"]["properties"]["text"]["type"] == "string"

    table = _cli("tools", "list", "--config", str(config), "--server", "beta")
    assert table.returncode == 0 and "beta__whoami" in table.stdout and "alpha__" not in table.stdout


async def test_one_access_line_per_call(gateway: RunningGateway) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        with structlog.testing.capture_logs() as logs:
            await client.call_tool("gamma__echo", {"text": "secret-argument"})
    # (The SDK client lists tools after a call to validate its output; that is a line of its own.)
    calls = [entry for entry in logs if entry["event"] == "call" and entry["method"] == "tools/call"]
    assert len(calls) == 1
    line = calls[0]
    assert line["method"] == "tools/call"
    assert line["server"] == "gamma"
    assert line["target"] == "gamma__echo"
    assert line["outcome"] == "ok"
    assert line["era"] == "modern"
    assert isinstance(line["duration_ms"], float)
    assert len(line["request_id"]) == 16
    assert "principal" in line
    assert "secret-argument" not in repr(logs)  # arguments are never logged


async def test_failed_calls_are_logged_with_their_code(gateway: RunningGateway) -> None:
    async with Client(gateway.url, mode="legacy") as client:
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(Exception, match="Unknown tool"):
                await client.call_tool("alpha__missing", {})
    (line,) = [entry for entry in logs if entry["event"] == "call" and entry["method"] == "tools/call"]
    assert (line["outcome"], line["error_code"]) == ("error", -32602)


async def test_a_server_registered_at_run_time_can_log_its_payloads(tmp_path: Path) -> None:
    async with (
        http_upstream("chatty") as upstream,
        running_gateway(servers=[], store_dir=tmp_path) as gw,
        AdminClient(gw.admin_url) as admin,
    ):
        server = {"name": "chatty", "transport": "streamable-http", "url": upstream.url, "log_payloads": True}
        status, body = await admin.request("POST", "/admin/servers", server)
        assert status == 201, body
        await wait_for_state(gw.gateway, "chatty", State.READY)
        async with Client(gw.url, mode="2026-07-28") as client:
            with structlog.testing.capture_logs() as logs:
                await client.call_tool("chatty__echo", {"text": "shown", "password": "hidden"})
    (line,) = [entry for entry in logs if entry["event"] == "call" and entry["method"] == "tools/call"]
    assert line["arguments"] == {"text": "shown", "password": "[REDACTED]"}
    assert line["result"]["content"][0]["text"] == "shown"
