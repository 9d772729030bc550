"""Full duplex through Toolway with the official TypeScript SDK client (handshake era).

Three upstreams behind one gateway: ``alpha`` speaks 2026-07-28, so the gateway bridges its
``input_required`` to the TS client as real elicitation/sampling/roots requests; ``beta`` is a
handshake-era HTTP server and ``gamma`` a stdio one, whose requests the gateway relays. Session-level
notifications (list_changed, resources/updated) reach the TS client on its standalone GET stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
    stdio_upstream_command,
    wait_for_state,
)
from toolway.testing.ts_client import INSTALL_TIMEOUT_SECONDS, run_ts_client

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)

# The first test may run `npm ci` in the session fixture.
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("ts_client"),
    pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS + 60),
]

SERVERS = ["alpha", "beta", "gamma"]  # 2026-07-28 HTTP (bridged), handshake-era HTTP, stdio
TIMEOUT = 30.0  # the whole driver run
CALL_MS = 10_000  # one request step
NEGATIVE_WAIT_MS = 1_500  # how long a client listens for a notification it must not get


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alpha() -> AsyncIterator[RunningHttpUpstream]:
    """Speaks both eras (the gateway picks 2026-07-28), answers over SSE."""
    async with http_upstream("alpha") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def beta() -> AsyncIterator[RunningHttpUpstream]:
    """Handshake era only, answering over SSE (so it can ask back mid-call)."""
    async with http_upstream("beta", era="handshake") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    alpha: RunningHttpUpstream, beta: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    servers = [
        {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
        {"name": "beta", "transport": "streamable-http", "url": beta.url},
        {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")},
    ]
    async with running_gateway(servers=servers, store_dir=tmp_path_factory.mktemp("store")) as gw:
        for name in SERVERS:
            await wait_for_state(gw.gateway, name, State.READY, timeout=20)
        yield gw


def ok(line: dict[str, Any]) -> Any:
    assert line.get("ok") is True, line
    return line["result"]


def text(result: dict[str, Any]) -> str:
    assert result.get("isError") is not True, result
    [block] = result["content"]
    return str(block["text"])


def call(name: str, arguments: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"op": "callTool", "name": name, "arguments": arguments or {}, "timeoutMs": CALL_MS, **extra}


def of_method(notifications: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [n for n in notifications if n["method"] == method]


@pytest.mark.parametrize("server", SERVERS)
async def test_elicitation_reaches_the_ts_client(gateway: RunningGateway, server: str) -> None:
    init, asked, received, errors = await run_ts_client(
        gateway.url,
        [
            {"op": "init", "elicitation": {"action": "accept", "content": {"answer": "blue"}}},
            call(f"{server}__ask", {"question": "favourite colour?"}),
            {"op": "received"},
            {"op": "transportErrors"},
        ],
        timeout=TIMEOUT,
    )
    assert ok(init)["clientCapabilities"] == {"elicitation": {}}
    assert text(ok(asked)) == f"{server} heard: blue"
    [request] = ok(received)
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "favourite colour?"
    assert set(request["params"]["requestedSchema"]["properties"]) == {"answer"}
    assert ok(errors) == []


@pytest.mark.parametrize("server", SERVERS)
async def test_sampling_reaches_the_ts_client(gateway: RunningGateway, server: str) -> None:
    _, sampled, received = await run_ts_client(
        gateway.url,
        [
            {"op": "init", "sampling": {"text": "canned reply"}},
            call(f"{server}__sample", {"prompt": "say hi"}),
            {"op": "received"},
        ],
        timeout=TIMEOUT,
    )
    assert text(ok(sampled)) == f"{server} sampled: canned reply"
    [request] = ok(received)
    assert request["method"] == "sampling/createMessage"
    assert request["params"]["messages"][0]["content"]["text"] == "say hi"


@pytest.mark.parametrize("server", SERVERS)
async def test_roots_reach_the_ts_client(gateway: RunningGateway, server: str) -> None:
    _, listed, received = await run_ts_client(
        gateway.url,
        [
            {
                "op": "init",
                "roots": [
                    {"uri": "file:///work/project", "name": "project"},
                    {"uri": "file:///work/other", "name": "other"},
                ],
            },
            call(f"{server}__roots"),
            {"op": "received"},
        ],
        timeout=TIMEOUT,
    )
    assert text(ok(listed)) == "file:///work/project,file:///work/other"
    assert [r["method"] for r in ok(received)] == ["roots/list"]


@pytest.mark.parametrize("server", SERVERS)
async def test_progress_uses_the_clients_own_token(gateway: RunningGateway, server: str) -> None:
    _, counted, notifications = await run_ts_client(
        gateway.url,
        [{"op": "init"}, call(f"{server}__progress", {"steps": 3}, progress=True), {"op": "notifications"}],
        timeout=TIMEOUT,
    )
    assert text(ok(counted)) == f"{server} counted 3"
    # The SDK hands a progress notification to the call's handler only when its progressToken is
    # the one the SDK put in that request's _meta: these three came back with the client's token.
    assert counted["progress"] == [{"progress": i, "total": 3, "message": f"{server} step {i}"} for i in (1, 2, 3)]
    progress = of_method(ok(notifications), "notifications/progress")
    assert [n["params"]["progress"] for n in progress] == [1, 2, 3]
    tokens = {n["params"]["progressToken"] for n in progress}
    assert len(tokens) == 1
    assert isinstance(next(iter(tokens)), int)  # the SDK's token is the request's own message id


@pytest.mark.parametrize("server", SERVERS)
async def test_log_messages_respect_the_ts_clients_level(gateway: RunningGateway, server: str) -> None:
    _, level, quiet, loud, loud_message, _, notifications = await run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            {"op": "setLoggingLevel", "level": "warning", "timeoutMs": CALL_MS},
            call(f"{server}__log", {"level": "info", "message": "quiet"}),
            call(f"{server}__log", {"level": "error", "message": "loud"}),
            {"op": "waitNotification", "method": "notifications/message", "params": {"level": "error"}},
            {"op": "sleep", "ms": 200},  # room for a stray "quiet" to arrive, were it coming
            {"op": "notifications"},
        ],
        timeout=TIMEOUT,
    )
    assert ok(level) == {}
    assert text(ok(quiet)) == "logged"
    assert text(ok(loud)) == "logged"
    assert ok(loud_message)["params"]["data"] == "loud"
    messages = of_method(ok(notifications), "notifications/message")
    assert [(m["params"]["level"], m["params"]["data"]) for m in messages] == [("error", "loud")]


@pytest.mark.parametrize("server", SERVERS)
async def test_no_elicitation_capability_fails_fast(gateway: RunningGateway, server: str) -> None:
    started = time.monotonic()
    _, asked, received = await run_ts_client(
        gateway.url,
        [{"op": "init"}, call(f"{server}__ask", {"question": "anyone?"}), {"op": "received"}],
        timeout=TIMEOUT,
    )
    elapsed = time.monotonic() - started
    if asked["ok"]:
        assert asked["result"]["isError"] is True, asked
    else:
        assert asked["error"]["name"] == "McpError", asked
        assert asked["error"]["code"] != -32001, asked  # not the SDK's own request timeout
    assert ok(received) == []  # nobody asked the client what it cannot answer
    assert elapsed < CALL_MS / 1000


@pytest.mark.parametrize("server", SERVERS)
async def test_tools_list_changed_reaches_the_ts_client(gateway: RunningGateway, server: str) -> None:
    tool = f"fresh_{server}"
    _, grown, changed, tools = await run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            call(f"{server}__grow", {"tool": tool}),
            {"op": "listChanged", "kind": "tools", "timeoutMs": CALL_MS},
            {"op": "listTools", "timeoutMs": CALL_MS},
        ],
        timeout=TIMEOUT,
    )
    assert text(ok(grown)) == f"{server} grew {tool}"
    assert ok(changed)["method"] == "notifications/tools/list_changed"
    names = [t["name"] for t in ok(tools)["tools"]]
    assert f"{server}__{tool}" in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("server", SERVERS)
async def test_resource_updates_reach_subscribers_only(gateway: RunningGateway, server: str, tmp_path: Path) -> None:
    uri = f"mem://{server}/k1"
    listening = str(tmp_path / "bystander-listening")
    delivered = str(tmp_path / "subscriber-got-it")
    subscriber = run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            {"op": "subscribe", "uri": uri, "timeoutMs": CALL_MS},
            {"op": "waitSignal", "path": listening, "timeoutMs": CALL_MS},
            call(f"{server}__touch", {"key": "k1"}),
            {
                "op": "waitNotification",
                "method": "notifications/resources/updated",
                "params": {"uri": uri},
                "timeoutMs": CALL_MS,
            },
            {"op": "signal", "path": delivered},
            {"op": "unsubscribe", "uri": uri, "timeoutMs": CALL_MS},
        ],
        timeout=TIMEOUT,
    )
    bystander = run_ts_client(  # connected all along, subscribed to nothing
        gateway.url,
        [
            {"op": "init"},
            {"op": "ping"},  # after the SDK has sent its standalone GET
            {"op": "signal", "path": listening},
            {"op": "waitSignal", "path": delivered, "timeoutMs": CALL_MS * 2},
            {
                "op": "waitNotification",
                "method": "notifications/resources/updated",
                "timeoutMs": NEGATIVE_WAIT_MS,
            },
            {"op": "notifications"},
        ],
        timeout=TIMEOUT,
    )
    (
        (_, subscribed, armed, touched, updated, _, unsubscribed),
        (_, pinged, _, got_it, stray, seen),
    ) = await asyncio.gather(subscriber, bystander)
    assert ok(subscribed) == {}
    assert ok(armed) == {}
    assert text(ok(touched)) == f"{server} touched {uri}"
    assert ok(updated)["method"] == "notifications/resources/updated"
    assert ok(updated)["params"]["uri"] == uri
    assert ok(unsubscribed) == {}
    assert ok(pinged) == {}
    assert ok(got_it) == {}
    assert stray["ok"] is False, stray
    assert stray["error"]["code"] == -32001
    assert of_method(ok(seen), "notifications/resources/updated") == []


@pytest.mark.parametrize(
    "server",
    ["alpha", "beta", "gamma"],
)
async def test_session_notifications_carry_no_upstream_listen_id(gateway: RunningGateway, server: str) -> None:
    uri = f"mem://{server}/meta"
    _, _, _, changed, _, updated, _ = await run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            {"op": "subscribe", "uri": uri, "timeoutMs": CALL_MS},
            call(f"{server}__grow", {"tool": f"meta_{server}"}),
            {"op": "listChanged", "kind": "tools", "timeoutMs": CALL_MS},
            call(f"{server}__touch", {"key": "meta"}),
            {
                "op": "waitNotification",
                "method": "notifications/resources/updated",
                "params": {"uri": uri},
                "timeoutMs": CALL_MS,
            },
            {"op": "unsubscribe", "uri": uri, "timeoutMs": CALL_MS},
        ],
        timeout=TIMEOUT,
    )
    # The key names a 2026-07-28 subscriptions/listen request; this client never made one.
    for notification in (ok(changed), ok(updated)):
        meta = notification.get("params", {}).get("_meta", {})
        assert "io.modelcontextprotocol/subscriptionId" not in meta, notification


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_one_change_is_one_list_changed_after_subscription_churn(gateway: RunningGateway, server: str) -> None:
    uri = f"mem://{server}/churn"
    _, _, _, grown, changed, _, notifications = await run_ts_client(
        gateway.url,
        [
            {"op": "init"},
            {"op": "subscribe", "uri": uri, "timeoutMs": CALL_MS},
            {"op": "unsubscribe", "uri": uri, "timeoutMs": CALL_MS},
            call(f"{server}__grow", {"tool": f"once_{server}"}),
            {"op": "listChanged", "kind": "tools", "timeoutMs": CALL_MS},
            {"op": "sleep", "ms": 500},  # room for duplicates to arrive, were they coming
            {"op": "notifications"},
        ],
        timeout=TIMEOUT,
    )
    assert text(ok(grown)) == f"{server} grew once_{server}"
    assert ok(changed)["method"] == "notifications/tools/list_changed"
    assert len(of_method(ok(notifications), "notifications/tools/list_changed")) == 1, ok(notifications)


async def test_concurrent_clients_see_only_their_own_progress(gateway: RunningGateway) -> None:
    def script(steps: int) -> list[dict[str, Any]]:
        return [
            {"op": "init"},
            call("gamma__progress", {"steps": steps, "delay": 0.2}, progress=True),
            {"op": "notifications"},
        ]

    (_, three, three_seen), (_, five, five_seen) = await asyncio.gather(
        run_ts_client(gateway.url, script(3), timeout=TIMEOUT),
        run_ts_client(gateway.url, script(5), timeout=TIMEOUT),
    )
    for steps, counted, seen in ((3, three, three_seen), (5, five, five_seen)):
        assert text(ok(counted)) == f"gamma counted {steps}"
        expected = [{"progress": i, "total": steps, "message": f"gamma step {i}"} for i in range(1, steps + 1)]
        assert counted["progress"] == expected
        progress = of_method(ok(seen), "notifications/progress")
        assert [(n["params"]["progress"], n["params"]["total"]) for n in progress] == [
            (i, steps) for i in range(1, steps + 1)
        ]
    # Each SDK client minted its token from its own message ids: the same token on both sessions.
    tokens = {n["params"]["progressToken"] for n in of_method(ok(three_seen) + ok(five_seen), "notifications/progress")}
    assert len(tokens) == 1
