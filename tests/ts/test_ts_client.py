"""The official TypeScript SDK client (clients/ts/client.mjs) against real MCP servers.

First straight at the fixture upstream, which proves the driver itself; then through Toolway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from toolway.sessions.upstream import State
from toolway.testing import (
    RunningGateway,
    RunningHttpUpstream,
    http_upstream,
    running_gateway,
    wait_for_state,
)
from toolway.testing.ts_client import INSTALL_TIMEOUT_SECONDS, TsClientError, run_ts_client

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)

# The first test may run `npm ci` in the session fixture.
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("ts_client"),
    pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS + 60),
]

# The fixture upstream serves at least these (it grows; lists are checked to contain them).
FIXTURE_TOOLS = {"echo", "add", "whoami", "slow", "fail", "crash"}
TIMEOUT = 30.0
INTERACTIVE_SERVER = Path(__file__).with_name("interactive_server.py")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alpha() -> AsyncIterator[RunningHttpUpstream]:
    """Both eras, SSE answers (the TS client speaks the handshake era to it)."""
    async with http_upstream("alpha") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def beta() -> AsyncIterator[RunningHttpUpstream]:
    """A server from before 2026-07-28 that answers with JSON bodies instead of SSE."""
    async with http_upstream("beta", era="handshake", json_response=True) as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def interactive() -> AsyncIterator[str]:
    """A server that sends progress, elicitation, sampling, roots/list and notifications; its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(INTERACTIVE_SERVER),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        word, _, port = line.strip().partition(" ")
        assert word == "READY" and port.isdigit(), f"interactive server said {line!r}"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    alpha: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    servers = [{"name": "alpha", "transport": "streamable-http", "url": alpha.url}]
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store")) as gw:
        await wait_for_state(gw.gateway, "alpha", State.READY)
        yield gw


def ok(line: dict[str, Any]) -> Any:
    assert line.get("ok") is True, line
    return line["result"]


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"]]


BASIC_STEPS: list[dict[str, Any]] = [
    {"op": "init"},
    {"op": "listTools"},
    {"op": "callTool", "name": "add", "arguments": {"a": 2, "b": 3}},
    {"op": "getPrompt", "name": "greet", "arguments": {"name": "bob"}},
    {"op": "readResource", "uri": "ui://{name}/page"},
    {"op": "listResources"},
    {
        "op": "complete",
        "ref": {"type": "ref/prompt", "name": "greet"},
        "argument": {"name": "name", "value": "a"},
    },
    {"op": "transportErrors"},
]


@pytest.mark.parametrize("name", ["alpha", "beta"])
async def test_driver_against_the_upstream_directly(
    name: str, alpha: RunningHttpUpstream, beta: RunningHttpUpstream
) -> None:
    upstream = {"alpha": alpha, "beta": beta}[name]
    steps = [{k: v.format(name=name) if k == "uri" else v for k, v in step.items()} for step in BASIC_STEPS]
    init, tools, added, prompt, page, resources, completion, errors = await run_ts_client(
        upstream.url, steps, timeout=TIMEOUT
    )

    connected = ok(init)
    assert connected["serverInfo"]["name"] == name
    assert connected["protocolVersion"] == "2025-11-25"
    assert connected["sessionId"]
    names = [tool["name"] for tool in ok(tools)["tools"]]
    assert FIXTURE_TOOLS <= set(names)
    assert len(names) == len(set(names))
    assert ok(tools)["pages"] == 1
    assert texts(ok(added)) == ["5"]
    assert ok(added)["structuredContent"] == {"result": 5}
    assert ok(added)["isError"] is False
    messages = ok(prompt)["messages"]
    assert [m["content"]["text"] for m in messages] == [f"Hello, bob, from {name}"]
    assert ok(page)["contents"] == [{"uri": f"ui://{name}/page", "mimeType": "text/html", "text": f"<h1>{name}</h1>"}]
    assert {f"ui://{name}/page", f"file:///{name}/readme.txt"} <= {r["uri"] for r in ok(resources)["resources"]}
    assert ok(completion)["completion"]["values"] == ["alice"]
    assert ok(errors) == []


async def test_driver_reports_failures_per_step_and_runs_on(alpha: RunningHttpUpstream) -> None:
    results = await run_ts_client(
        alpha.url,
        [
            {"op": "callTool", "name": "fail", "arguments": {"message": "boom"}, "progress": True},
            {"op": "getPrompt", "name": "no-such-prompt", "arguments": {}},
            {"op": "waitNotification", "method": "notifications/resources/updated", "timeoutMs": 200},
            {"op": "listChanged", "timeoutMs": 100},
            {"op": "no-such-op"},
            {"op": "callTool", "name": "whoami"},
            {"op": "notifications"},
            {"op": "received"},
        ],
        timeout=TIMEOUT,
    )
    failed, prompt, updated, changed, bogus, whoami, notifications, received = results
    assert ok(failed)["isError"] is True
    assert texts(ok(failed)) == ["Error executing tool fail: boom"]
    assert failed["progress"] == []
    # A JSON-RPC error arrives as McpError: its code, and its message without "MCP error N: ".
    assert prompt["ok"] is False
    assert prompt["error"]["name"] == "McpError"
    assert isinstance(prompt["error"]["code"], int)  # the Python SDK server says 0 here
    assert prompt["error"]["message"]
    assert not prompt["error"]["message"].startswith("MCP error")
    assert updated["ok"] is False
    assert updated["error"]["code"] == -32001
    assert "notifications/resources/updated" in updated["error"]["message"]
    assert changed["ok"] is False
    assert "notifications/tools/list_changed" in changed["error"]["message"]
    assert bogus == {
        "ok": False,
        "error": {"code": -32601, "message": "unknown op: no-such-op", "name": "StepError"},
    }
    assert texts(ok(whoami)) == ["alpha"]
    assert ok(notifications) == []
    assert ok(received) == []


async def test_init_declares_capabilities_for_canned_answers(alpha: RunningHttpUpstream) -> None:
    results = await run_ts_client(
        alpha.url,
        [
            {
                "op": "init",
                "capabilities": {"experimental": {"toolway": {}}},
                "elicitation": {"action": "accept", "content": {"ok": True}},
                "sampling": {"text": "hi"},
                "roots": [{"uri": "file:///tmp", "name": "tmp"}],
            },
            {"op": "ping"},
        ],
        timeout=TIMEOUT,
    )
    declared = ok(results[0])["clientCapabilities"]
    assert declared == {
        "experimental": {"toolway": {}},
        "elicitation": {},
        "sampling": {},
        "roots": {"listChanged": True},
    }
    assert ok(results[1]) == {}


async def test_canned_answers_progress_and_notifications(interactive: str) -> None:
    results = await run_ts_client(
        interactive,
        [
            {
                "op": "init",
                "elicitation": {"action": "accept", "content": {"name": "zoe"}},
                "sampling": {"text": "canned"},
                "roots": [{"uri": "file:///tmp/a", "name": "a"}],
            },
            {"op": "callTool", "name": "progress", "arguments": {"steps": 3}, "progress": True},
            {"op": "callTool", "name": "ask"},
            {"op": "callTool", "name": "sample"},
            {"op": "callTool", "name": "roots"},
            {"op": "callTool", "name": "notify", "arguments": {"uri": "mem://x/1"}},
            {
                "op": "waitNotification",
                "method": "notifications/resources/updated",
                "params": {"uri": "mem://x/1"},
            },
            {"op": "listChanged"},
            {"op": "received"},
            {"op": "notifications"},
            {"op": "transportErrors"},
        ],
        timeout=TIMEOUT,
    )
    init, progress, ask, sample, roots, notify, updated, changed, received, notifications, errors = results
    assert ok(init)["clientCapabilities"] == {
        "elicitation": {},
        "sampling": {},
        "roots": {"listChanged": True},
    }
    assert texts(ok(progress)) == ["done"]
    assert progress["progress"] == [{"progress": step, "total": 3, "message": f"step {step}"} for step in (1, 2, 3)]
    assert texts(ok(ask)) == ["accept:zoe"]
    assert texts(ok(sample)) == ["canned"]
    assert texts(ok(roots)) == ["file:///tmp/a"]
    assert texts(ok(notify)) == ["sent"]
    # These two come on the standalone GET stream the SDK opens after initialize.
    assert ok(updated) == {"method": "notifications/resources/updated", "params": {"uri": "mem://x/1"}}
    assert ok(changed) == {"method": "notifications/tools/list_changed"}
    assert [r["method"] for r in ok(received)] == [
        "elicitation/create",
        "sampling/createMessage",
        "roots/list",
    ]
    assert ok(received)[0]["params"]["message"] == "Your name?"
    methods = [n["method"] for n in ok(notifications)]
    assert methods == ["notifications/progress"] * 3 + [
        "notifications/resources/updated",
        "notifications/tools/list_changed",
    ]
    assert ok(errors) == []


async def test_unreachable_server_fails_every_step_but_the_run_completes() -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = await run_ts_client(
        f"http://127.0.0.1:{port}/mcp", [{"op": "init"}, {"op": "listTools"}, {"op": "notifications"}]
    )
    assert results[0]["ok"] is False
    assert results[1]["ok"] is False
    assert results[1]["error"]["message"].startswith("not connected: ")
    assert ok(results[2]) == []


async def test_a_bad_script_raises_with_stderr(alpha: RunningHttpUpstream) -> None:
    with pytest.raises(TsClientError, match="exited with status 2") as caught:
        await run_ts_client(alpha.url, [{"name": "no op"}])
    assert 'step 0 is not an object with a string "op"' in caught.value.stderr


async def test_the_global_timeout_ends_the_run(alpha: RunningHttpUpstream) -> None:
    with pytest.raises(TsClientError, match="timed out after 1 of 2 steps") as caught:
        await run_ts_client(
            alpha.url,
            [{"op": "ping"}, {"op": "callTool", "name": "slow", "arguments": {"seconds": 30}}],
            timeout=3,
        )
    assert caught.value.results == [{"ok": True, "result": {}}]


async def test_through_toolway(gateway: RunningGateway) -> None:
    results = await run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            {"op": "listTools"},
            {"op": "callTool", "name": "alpha__add", "arguments": {"a": 2, "b": 3}, "progress": True},
            {"op": "getPrompt", "name": "alpha__greet", "arguments": {"name": "ann"}},
            {"op": "readResource", "uri": "ui://alpha/page"},
            {"op": "callTool", "name": "alpha__nope"},
            {"op": "transportErrors"},
        ],
        timeout=TIMEOUT,
    )
    init, tools, added, prompt, page, unknown, errors = results
    connected = ok(init)
    assert connected["protocolVersion"] == "2025-11-25"
    assert connected["sessionId"]
    names = [tool["name"] for tool in ok(tools)["tools"]]
    assert {f"alpha__{tool}" for tool in FIXTURE_TOOLS} <= set(names)
    assert all(name.startswith("alpha__") for name in names)
    assert len(names) == len(set(names))
    assert texts(ok(added)) == ["5"]
    assert ok(added)["isError"] is False
    assert added["progress"] == []
    assert [m["content"]["text"] for m in ok(prompt)["messages"]] == ["Hello, ann, from alpha"]
    assert ok(page)["contents"][0]["text"] == "<h1>alpha</h1>"
    # Toolway refuses an unknown tool with a JSON-RPC error; the SDK raises it as McpError.
    assert unknown["ok"] is False
    assert unknown["error"]["code"] == -32602
    assert "alpha__nope" in unknown["error"]["message"]
    # Toolway answers the client's standalone GET with 405, which the SDK takes as "no stream".
    assert ok(errors) == []
