"""The audit log end to end: real calls, a real shutdown, the CLI and the admin API on the result."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from mcp import Client

from toolway.config.model import GatewayConfig
from toolway.registry.audit_store import AuditStore
from toolway.testing import RunningHttpUpstream, gateway_config, running_gateway, stdio_upstream_command
from toolway.testing.wire import modern_request

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    toolway = str(Path(sys.executable).parent / "toolway")
    return subprocess.run([toolway, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ))


def _config(alpha: RunningHttpUpstream, tmp_path: Path, **overrides: object) -> tuple[GatewayConfig, Path]:
    servers = [
        {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
        {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")},
    ]
    config = gateway_config(servers, tmp_path, **overrides)
    path = tmp_path / "toolway.yaml"
    path.write_text(config.model_dump_json())  # JSON is YAML
    return config, path


async def test_calls_are_audited_verified_queried_and_exported(alpha: RunningHttpUpstream, tmp_path: Path) -> None:
    config, path = _config(alpha, tmp_path)
    async with running_gateway(config) as gw:
        async with Client(gw.url) as client:
            await client.call_tool("alpha__echo", {"text": "top secret", "n": 1})
            await client.call_tool("gamma__fail", {"message": "nope"})
            with pytest.raises(Exception, match="Unknown tool"):
                await client.call_tool("alpha__missing", {})
            await client.get_prompt("alpha__greet", {"name": "Ana"})
            await client.read_resource("file:///alpha/readme.txt")
            await client.list_tools()  # not audited
        async with aiohttp.ClientSession() as http:
            assert gw.admin_url is not None
            async with http.get(f"{gw.admin_url}/admin/audit", params={"tool": "alpha__echo"}) as resp:
                assert resp.status == 200
                (record,) = (await resp.json())["records"]  # answered calls are visible at once
            async with http.get(f"{gw.admin_url}/admin/audit", params={"limit": "2"}) as resp:
                latest = (await resp.json())["records"]
            async with http.get(f"{gw.admin_url}/admin/audit", params={"since": "2999-01-01"}) as resp:
                assert (await resp.json())["records"] == []
            async with http.get(f"{gw.admin_url}/admin/audit", params={"limit": "0"}) as resp:
                assert resp.status == 400
    assert record["method"] == "tools/call" and record["server"] == "alpha" and record["outcome"] == "ok"
    assert record["client"].startswith("127.0.0.1:")  # from where: the client's address
    canonical = orjson.dumps({"n": 1, "text": "top secret"}, option=orjson.OPT_SORT_KEYS)
    assert record["args_digest"] == hashlib.sha256(canonical).hexdigest()
    assert record["at"].endswith("Z") and record["principal"] is None and record["transport"] == "streamable-http"
    assert [r["method"] for r in latest] == ["prompts/get", "resources/read"]

    verify = _cli("audit", "verify", "--config", str(path))
    assert verify.returncode == 0, verify.stderr
    assert "intact: 5 rows" in verify.stdout

    rows = json.loads(_cli("audit", "query", "--config", str(path), "--json").stdout)
    assert [(r["target"], r["outcome"], r["error_code"]) for r in rows] == [
        ("alpha__echo", "ok", None),
        ("gamma__fail", "tool_error", None),
        ("alpha__missing", "error", -32602),
        ("alpha__greet", "ok", None),
        ("file:///alpha/readme.txt", "ok", None),
    ]
    table = _cli("audit", "query", "--config", str(path), "--tool", "gamma__fail", "--since", "2000-01-01")
    assert table.returncode == 0 and "gamma__fail" in table.stdout and "alpha__echo" not in table.stdout

    export = _cli("audit", "export", "--config", str(path))
    lines = export.stdout.splitlines()
    exported = [json.loads(line) for line in lines]  # every line is one JSON object
    assert exported == rows and len(lines) == 5
    assert [r["prev_hash"] for r in exported[1:]] == [r["hash"] for r in exported[:-1]]
    assert "top secret" not in export.stdout  # digests, never arguments

    with sqlite3.connect(tmp_path / "toolway.db") as db:  # someone covers their tracks
        db.execute("UPDATE audit_log SET outcome = 'ok', error_code = NULL WHERE id = 3")
    broken = _cli("audit", "verify", "--config", str(path))
    assert broken.returncode == 3
    assert "row 3" in broken.stderr and "edited" in broken.stderr

    with sqlite3.connect(tmp_path / "toolway.db") as db:
        db.execute("DELETE FROM audit_log WHERE id = 3")
    deleted = _cli("audit", "verify", "--config", str(path))
    assert deleted.returncode == 3 and "row 3 deleted" in deleted.stderr


async def test_every_answered_call_survives_a_shutdown_under_load(alpha: RunningHttpUpstream, tmp_path: Path) -> None:
    # Big batches and a long interval: what is written, the shutdown wrote.
    config, _ = _config(alpha, tmp_path, audit={"batch_size": 10_000, "flush_seconds": 60})
    answered: set[str] = set()
    enough = asyncio.Event()

    async def fire(http: aiohttp.ClientSession, url: str, n: int) -> None:
        body, headers = modern_request("tools/call", {"name": "alpha__slow", "arguments": {"seconds": 0.01}}, n)
        request_id = f"load-{n}"
        try:
            async with http.post(url, json=body, headers={**headers, "X-Request-Id": request_id}) as resp:
                if resp.status == 200 and "result" in await resp.json():
                    answered.add(request_id)
        except (TimeoutError, aiohttp.ClientError):
            return  # refused or cut off by the shutdown: not answered, nothing to check
        if len(answered) >= 100:
            enough.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        async with running_gateway(config) as gw:
            calls = [asyncio.create_task(fire(http, gw.url, n)) for n in range(400)]
            async with asyncio.timeout(30):
                await enough.wait()
            # Leaving the block shuts the gateway down with calls still in flight.
        await asyncio.gather(*calls)

    assert len(answered) >= 100
    async with await AuditStore.open(config.store) as store:
        rows = await store.query()
        checked, broken = await store.verify()
    audited = {row.entry.request_id for row in rows}
    assert answered <= audited, sorted(answered - audited)[:5]
    assert broken is None and checked == len(rows)
