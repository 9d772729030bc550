"""Metrics, the per-tool summary and readiness, scraped from a real gateway after real calls.

Each test starts its own gateway (in front of the module's fixture upstreams), so its
counters start at zero and the numbers asserted are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import pytest_asyncio
from mcp import Client, MCPError
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from toolway.observability.metrics import METHODS
from toolway.registry.store import StoreError
from toolway.sessions.upstream import State
from toolway.testing import RunningGateway, RunningHttpUpstream, http_upstream, running_gateway, wait_for_state
from toolway.testing.wire import modern_request

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = {"reconnect": {"initial": 0.1, "max": 0.5}}
ECHOES, FAILURES = 3, 2  # N successes and M tool errors on alpha; two more successes on beta
UNKNOWN = ["alpha__missing", "nosuch__tool", "plaintool"]  # K unknown-tool errors


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(alpha: RunningHttpUpstream, beta: RunningHttpUpstream, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    servers = [
        {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
        {"name": "beta", "transport": "streamable-http", "url": beta.url},
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path) as gw:
        yield gw


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def scrape(gw: RunningGateway) -> list[Sample]:
    status, text = await get(f"{gw.admin_url}/metrics")
    assert status == 200
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def label_values(samples: list[Sample], name: str, label: str) -> set[str]:
    return {s.labels[label] for s in samples if s.name == name}


async def toolway_cli(*args: str) -> tuple[int, str, str]:
    """The real `toolway` command in a child process (awaited: the gateway it asks runs in this loop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLWAY_")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "toolway"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def config_file(gw: RunningGateway, tmp_path: Path) -> Path:
    """The gateway's config with the admin port it actually bound (it was started on port 0)."""
    assert gw.admin_url is not None
    port = int(gw.admin_url.rsplit(":", 1)[1])
    config = gw.config.model_copy(update={"admin": gw.config.admin.model_copy(update={"port": port})})
    path = tmp_path / "toolway.yaml"
    path.write_text(config.model_dump_json())  # JSON is YAML
    return path


async def scripted_session(gw: RunningGateway) -> None:
    async with Client(gw.url, mode="2026-07-28") as client:
        for i in range(ECHOES):
            assert (await client.call_tool("alpha__echo", {"text": f"hi {i}"})).is_error is False
        for _ in range(FAILURES):
            assert (await client.call_tool("alpha__fail", {"message": "boom"})).is_error is True
        for name in UNKNOWN:
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool(name, {})
    async with Client(gw.url, mode="legacy") as client:
        for _ in range(2):
            await client.call_tool("beta__add", {"a": 1, "b": 2})
        samples = await scrape(gw)
        assert total(samples, "toolway_sessions", era="handshake") == 1


async def test_metrics_count_every_call_exactly_and_stats_agree(fresh: RunningGateway, tmp_path: Path) -> None:
    await scripted_session(fresh)
    samples = await scrape(fresh)
    requests = "toolway_requests_total"
    calls = {"method": "tools/call"}

    assert total(samples, requests, **calls, server="alpha", tool="alpha__echo", outcome="ok") == ECHOES
    assert total(samples, requests, **calls, tool="alpha__echo") == ECHOES  # nothing else under its name
    assert total(samples, requests, **calls, server="alpha", tool="alpha__fail", outcome="tool_error") == FAILURES
    assert total(samples, requests, **calls, tool="alpha__fail", outcome="ok") == 0
    assert total(samples, requests, **calls, server="beta", tool="beta__add", outcome="ok", era="handshake") == 2
    assert total(samples, requests, **calls, tool="other", outcome="error") == len(UNKNOWN)
    assert total(samples, requests, **calls, server="alpha", tool="other") == 1  # alpha__missing
    assert total(samples, requests, **calls, server="other", tool="other") == 2
    assert total(samples, requests, **calls, era="modern", transport="streamable-http") == ECHOES + FAILURES + 3
    # Tool errors are answers: upstream they count as ok; unknown tools never went upstream.
    upstream = "toolway_upstream_requests_total"
    assert total(samples, upstream, server="alpha", method="tools/call", outcome="ok") == ECHOES + FAILURES
    assert total(samples, upstream, server="alpha", method="tools/call", outcome="error") == 0
    assert total(samples, "toolway_upstream_duration_seconds_count", server="beta", method="tools/call") == 2
    durations = "toolway_request_duration_seconds_count"
    assert total(samples, durations, server="alpha", method="tools/call", era="modern") == ECHOES + FAILURES + 1
    # Gauges, read at scrape time.
    assert total(samples, "toolway_upstream_state", server="alpha", state="connected") == 1
    assert total(samples, "toolway_upstream_state", server="alpha", state="unreachable") == 0
    assert total(samples, "toolway_catalog_items", server="alpha", kind="tools") == len(
        fresh.gateway.manager.connections["alpha"].catalog.get("tools/list")
    )
    assert total(samples, "toolway_upstream_inflight", server="alpha") == 0
    assert total(samples, "toolway_parked_calls") == 0

    path = config_file(fresh, tmp_path)
    code, out, err = await toolway_cli("stats", "--config", str(path), "--json")
    assert code == 0, err
    stats = json.loads(out)
    tools = {(row["server"], row["tool"]): row for row in stats["tools"]}
    assert set(tools) == {
        ("alpha", "alpha__echo"),
        ("alpha", "alpha__fail"),
        ("alpha", "other"),
        ("beta", "beta__add"),
        ("other", "other"),
    }
    for (server, tool), row in tools.items():
        labels = {**calls, "server": server, "tool": tool}
        assert row["calls"] == total(samples, requests, **labels), (server, tool)
        assert row["errors"] == row["calls"] - total(samples, requests, **labels, outcome="ok"), (server, tool)
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert (tools[("alpha", "alpha__fail")]["errors"], tools[("alpha", "alpha__fail")]["error_rate"]) == (2, 1.0)
    for row in stats["servers"]:
        assert row["calls"] == total(samples, requests, server=row["server"])
        assert row["errors"] == row["calls"] - total(samples, requests, server=row["server"], outcome="ok")
    assert {row["server"] for row in stats["servers"]} == {"alpha", "beta", "other"}

    code, out, err = await toolway_cli("stats", "--config", str(path))
    assert code == 0, err
    assert "alpha__echo" in out and "P99 ms" in out and "SERVER" in out


async def test_unknown_names_add_no_label_values(fresh: RunningGateway) -> None:
    async with Client(fresh.url, mode="2026-07-28") as client:
        await client.call_tool("alpha__echo", {"text": "x"})
        with pytest.raises(MCPError):
            await client.call_tool("alpha__not_a_tool", {})  # "other" exists from here on
        before = await scrape(fresh)
        for i in range(50):
            name = (f"alpha__nope{i}", f"server{i}__tool", f"bare{i}")[i % 3]
            with pytest.raises(MCPError):
                await client.call_tool(name, {})
    async with aiohttp.ClientSession() as http:
        for i in range(10):  # methods nobody defined are bucketed too
            body, headers = modern_request(f"custom/method{i}", {})
            async with http.post(fresh.url, data=orjson.dumps(body), headers=headers) as resp:
                assert resp.status in (200, 404)
    after = await scrape(fresh)

    requests = "toolway_requests_total"
    assert label_values(after, requests, "tool") == label_values(before, requests, "tool")
    assert label_values(after, requests, "server") <= {"alpha", "beta", "other", ""}
    assert label_values(after, requests, "method") <= METHODS | {"other"}
    grown = total(after, requests, tool="other") - total(before, requests, tool="other")
    assert grown == 50
    assert total(after, requests, method="other") == 10
    assert all(not s.labels.get("tool", "").startswith(("bare", "server")) for s in after)


async def test_readyz_follows_min_healthy_upstreams_and_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Handshake era with quick keep-alive pings, so the gateway notices the death without a call.
    async with http_upstream("delta", era="handshake") as delta:
        servers = [
            {"name": "delta", "transport": "streamable-http", "url": delta.url, "keepalive_seconds": 0.2, **FAST}
        ]
        admin = {"host": "127.0.0.1", "port": 0, "min_healthy_upstreams": 1}
        async with running_gateway(servers=servers, store_dir=tmp_path, admin=admin) as gw:
            await wait_for_state(gw.gateway, "delta", State.READY)
            status, text = await get(f"{gw.admin_url}/readyz")
            body = json.loads(text)
            assert status == 200, body
            assert body["ready"] is True and body["reasons"] == []
            assert body["checks"]["store"] is True and body["checks"]["config"] is True
            assert body["checks"]["upstreams"] == {"connected": 1, "required": 1, "ok": True}

            await delta.kill()
            await wait_for_state(gw.gateway, "delta", State.DOWN)
            status, text = await get(f"{gw.admin_url}/readyz")
            body = json.loads(text)
            assert status == 503
            assert body["ready"] is False
            assert body["checks"]["upstreams"]["ok"] is False
            assert any("min_healthy_upstreams" in reason for reason in body["reasons"])
            assert body["servers"] == {"delta": "unreachable"}
            assert (await get(f"{gw.admin_url}/healthz"))[0] == 200  # the process is still up

            async def unreachable() -> None:
                raise StoreError("cannot answer a ping in the store: disk I/O error")

            assert gw.gateway._store is not None
            monkeypatch.setattr(gw.gateway._store, "ping", unreachable)
            status, text = await get(f"{gw.admin_url}/readyz")
            body = json.loads(text)
            assert status == 503 and body["checks"]["store"] is False
            assert any("disk I/O error" in reason for reason in body["reasons"])


async def test_readyz_is_ready_without_upstreams_by_default(tmp_path: Path) -> None:
    async with running_gateway(servers=[], store_dir=tmp_path) as gw:
        status, text = await get(f"{gw.admin_url}/readyz")
        assert status == 200, text
        assert json.loads(text)["checks"]["upstreams"] == {"connected": 0, "required": 0, "ok": True}


async def test_stats_says_so_when_the_gateway_is_not_running(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "toolway.yaml"
    path.write_text(f"admin: {{host: 127.0.0.1, port: {port}}}\nstore: sqlite:///{tmp_path / 'db'}\n")
    code, out, err = await toolway_cli("stats", "--config", str(path))
    assert code == 1
    assert out == ""
    assert f"127.0.0.1:{port}" in err and "Is the gateway running?" in err
