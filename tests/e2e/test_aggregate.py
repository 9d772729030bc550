"""Done-when of the core issue: the official client, in both eras, sees three upstreams as one server."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from toolway.testing import RunningGateway, RunningHttpUpstream

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODES = ["legacy", "2026-07-28", "auto"]
FIXTURE_TOOLS = (
    {"echo", "add", "whoami", "slow", "fail", "crash"}
    | {
        "progress",
        "log",
        "ask",
        "sample",
        "roots",
        "grow",
        "redescribe",
        "touch",
        "subscriptions",
        "cancellations",
        "visit",
    }
    | {"replica", "record", "journal", "pid", "session"}
)


def _dump(result: Any) -> dict[str, Any]:
    return result.model_dump(exclude={"meta"}, exclude_none=True, by_alias=True)


async def _all_tools(client: Client) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [t.name for t in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return names


@pytest.mark.parametrize("mode", MODES)
async def test_lists_every_tool_of_three_upstreams(gateway: RunningGateway, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        names = await _all_tools(client)
    expected = {f"{server}__{tool}" for server in ("alpha", "beta", "gamma") for tool in FIXTURE_TOOLS}
    assert sorted(names) == sorted(expected)  # every tool exactly once across pages of 7


@pytest.mark.parametrize("mode", MODES)
async def test_calls_reach_each_upstream_and_come_back_unchanged(
    gateway: RunningGateway, alpha: RunningHttpUpstream, beta: RunningHttpUpstream, mode: str
) -> None:
    async with Client(gateway.url, mode=mode) as client:
        for server in ("alpha", "beta", "gamma"):
            who = await client.call_tool(f"{server}__whoami", {})
            assert who.content[0].text == server  # type: ignore[union-attr]
        through = await client.call_tool("beta__add", {"a": 20, "b": 22})
    async with Client(beta.url, mode="legacy") as direct:
        straight = await direct.call_tool("add", {"a": 20, "b": 22})
    assert _dump(through) == _dump(straight)
    assert through.structured_content == {"result": 42}


async def test_client_session_handshake_path(gateway: RunningGateway) -> None:
    async with streamable_http_client(gateway.url) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "toolway"
        assert init.protocol_version == "2025-11-25"
        result = await session.call_tool("gamma__echo", {"text": "héllo ✓"})
        assert result.content[0].text == "héllo ✓"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tool_errors_pass_through(gateway: RunningGateway, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        result = await client.call_tool("alpha__fail", {"message": "boom"})
    assert result.is_error
    assert "boom" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_unknown_tool_is_invalid_params(gateway: RunningGateway, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        for name in ("alpha__nope", "nobody__echo", "echo"):
            with pytest.raises(MCPError) as info:
                await client.call_tool(name, {})
            assert info.value.error.code == -32602
            assert name in info.value.error.message


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_prompts_resources_and_templates(gateway: RunningGateway, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        prompts = await client.list_prompts()
        assert {p.name for p in prompts.prompts} == {"alpha__greet", "beta__greet", "gamma__greet"}
        greeting = await client.get_prompt("beta__greet", {"name": "Ada"})
        assert greeting.messages[0].content.text == "Hello, Ada, from beta"  # type: ignore[union-attr]

        resources = await client.list_resources()
        uris = {str(r.uri) for r in resources.resources}
        assert {"ui://alpha/page", "ui://gamma/page", "file:///beta/readme.txt"} <= uris
        # Any scheme survives the round trip and reaches its owner.
        page = await client.read_resource("ui://gamma/page")
        assert page.contents[0].text == "<h1>gamma</h1>"  # type: ignore[union-attr]
        readme = await client.read_resource("file:///beta/readme.txt")
        assert readme.contents[0].text == "readme of beta"  # type: ignore[union-attr]

        templates = await client.list_resource_templates()
        assert {t.uri_template for t in templates.resource_templates} == {
            "mem://alpha/{key}",
            "mem://beta/{key}",
            "mem://gamma/{key}",
        }
        # A URI no server listed is routed by the template that matches it.
        item = await client.read_resource("mem://beta/xyz")
        assert item.contents[0].text == "beta:xyz"  # type: ignore[union-attr]


async def test_single_server_endpoint_keeps_names(gateway: RunningGateway) -> None:
    for mode in ("legacy", "2026-07-28"):
        async with Client(gateway.server_url("beta"), mode=mode) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == FIXTURE_TOOLS
            who = await client.call_tool("whoami", {})
            assert who.content[0].text == "beta"  # type: ignore[union-attr]
            page = await client.read_resource("ui://beta/page")
            assert page.contents[0].text == "<h1>beta</h1>"  # type: ignore[union-attr]


async def test_completion_routes_to_the_prompt_owner(gateway: RunningGateway) -> None:
    from mcp.types import PromptReference

    async with Client(gateway.url, mode="legacy") as client:
        result = await client.complete(
            PromptReference(type="ref/prompt", name="gamma__greet"), {"name": "name", "value": "a"}
        )
    assert result.completion.values == ["alice"]
