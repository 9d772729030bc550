"""Full duplex through the gateway, in both eras, against upstreams of both eras and transports.

The same fixture tools ask their questions the handshake-era way (a request mid-call)
or the 2026-07-28 way (`input_required`), so each pairing below exercises either the
gateway's relaying or its bridge between eras.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp.types as types
import pytest
from mcp import Client, MCPError

from toolway.testing import RunningGateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

ERAS = ["legacy", "2026-07-28"]
SERVERS = ["alpha", "beta", "gamma"]  # stateless-era HTTP, handshake-era HTTP, stdio


async def answer_elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"answer": f"re: {params.message}"})


async def answer_sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    prompt = params.messages[0].content.text  # type: ignore[union-attr]
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text=prompt.upper()), model="fixture"
    )


async def answer_roots(ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])  # type: ignore[arg-type]


def client(gateway: RunningGateway, mode: str, **callbacks: Any) -> Client:
    return Client(gateway.url, mode=mode, **callbacks)


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_elicitation_completes_across_eras(gateway: RunningGateway, mode: str, server: str) -> None:
    async with client(gateway, mode, elicitation_callback=answer_elicitation) as c:
        result = await c.call_tool(f"{server}__ask", {"question": "favourite colour?"})
    assert text(result) == f"{server} heard: re: favourite colour?"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_sampling_completes_across_eras(gateway: RunningGateway, mode: str, server: str) -> None:
    async with client(gateway, mode, sampling_callback=answer_sampling) as c:
        result = await c.call_tool(f"{server}__sample", {"prompt": "say hi"})
    assert text(result) == f"{server} sampled: SAY HI"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_roots_are_relayed(gateway: RunningGateway, mode: str, server: str) -> None:
    async with client(gateway, mode, list_roots_callback=answer_roots) as c:
        result = await c.call_tool(f"{server}__roots", {})
    assert text(result) == "file:///work/project"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_missing_capability_is_an_error_not_a_hang(gateway: RunningGateway, mode: str, server: str) -> None:
    async with client(gateway, mode) as c:  # declares no elicitation capability
        async with asyncio.timeout(10):
            try:
                result = await c.call_tool(f"{server}__ask", {"question": "anyone?"})
            except MCPError as exc:
                assert exc.error.code in (-32021, -32602, -32603, -32600)
            else:
                assert result.is_error


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ERAS)
async def test_progress_reaches_the_caller(gateway: RunningGateway, mode: str, server: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with client(gateway, mode) as c:
        result = await c.call_tool(f"{server}__progress", {"steps": 3}, progress_callback=on_progress)
    assert text(result) == f"{server} counted 3"
    assert seen == [(float(i), 3.0, f"{server} step {i}") for i in (1, 2, 3)]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # logging is deprecated in 2026
@pytest.mark.parametrize("server", SERVERS)
async def test_log_messages_respect_the_clients_level(gateway: RunningGateway, server: str) -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with client(gateway, "legacy", logging_callback=on_log) as c:
        await c.set_logging_level("warning")
        await c.call_tool(f"{server}__log", {"level": "info", "message": "quiet"})
        await c.call_tool(f"{server}__log", {"level": "error", "message": "loud"})
    assert [(m.level, m.data) for m in received] == [("error", "loud")]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
@pytest.mark.parametrize("server", SERVERS)
async def test_stateless_clients_opt_in_to_log_messages(gateway: RunningGateway, server: str) -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with client(gateway, "2026-07-28", logging_callback=on_log) as c:
        await c.call_tool(f"{server}__log", {"level": "error", "message": "unasked"})
    async with client(gateway, "2026-07-28", logging_callback=on_log, log_level="info") as c:
        await c.call_tool(f"{server}__log", {"level": "debug", "message": "below"})
        await c.call_tool(f"{server}__log", {"level": "warning", "message": "asked"})
    assert [(m.level, m.data) for m in received] == [("warning", "asked")]


@pytest.mark.parametrize("server", ["beta"])  # URL mode mid-call needs a handshake-era server
async def test_url_elicitation_and_its_completion(gateway: RunningGateway, server: str) -> None:
    completed = asyncio.Event()
    asked: list[types.ElicitRequestURLParams] = []

    async def consent(ctx: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            completed.set()

    async with client(gateway, "legacy", elicitation_callback=consent, message_handler=on_message) as c:
        result = await c.call_tool(f"{server}__visit", {"url": "https://example.test/consent"})
        assert text(result) == f"{server} visit: accept"
        async with asyncio.timeout(5):
            await completed.wait()
    assert asked[0].mode == "url" and asked[0].url == "https://example.test/consent"
