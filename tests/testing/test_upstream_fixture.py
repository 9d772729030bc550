"""The fixture upstream and the example servers, over real processes and sockets.

The official SDK's client is the peer throughout, so these tests pin down what the fixture
offers a gateway under test: both protocol eras, or the handshake era alone, on both transports.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import PromptReference
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from toolway.testing.processes import http_upstream, start_http_upstream, stdio_upstream_command

BASE_TOOLS = (
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
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "servers"
MODERN = MODERN_PROTOCOL_VERSIONS[-1]


def stdio_params(command: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=command[0], args=command[1:])


def assert_era(client: Client, era: str) -> None:
    """``era`` is "modern" (server/discover adopted) or "handshake" (initialize ran)."""
    session = client.session
    if era == "modern":
        assert session.discover_result is not None
        assert session.initialize_result is None
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
    else:
        assert session.initialize_result is not None
        assert session.discover_result is None
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


async def assert_basic_calls(client: Client, name: str) -> None:
    tools = await client.list_tools()
    assert {tool.name for tool in tools.tools} == BASE_TOOLS
    assert tools.next_cursor is None
    added = await client.call_tool("add", {"a": 1, "b": 2})
    assert not added.is_error
    assert added.structured_content == {"result": 3}
    assert [block.text for block in added.content] == ["3"]  # type: ignore[union-attr]
    whoami = await client.call_tool("whoami", {})
    assert [block.text for block in whoami.content] == [name]  # type: ignore[union-attr]


def post_json(url: str, body: dict[str, object], headers: dict[str, str]) -> tuple[int, str | None, bytes]:
    """POST ``body``; return status, Content-Type and raw body (blocking, for ``to_thread``)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Content-Type"), error.read()


DISCOVER = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "server/discover",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


@asynccontextmanager
async def stdio_process(command: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``command`` with piped stdio; close stdin and reap it afterwards."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        # Drain what is left so the pipe transports close cleanly.
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            await stream.read()


# --- HTTP, both eras ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("json_response", "stateless"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["sse-stateful", "json-stateful", "sse-stateless", "json-stateless"],
)
async def test_http_both_eras_serves_auto_and_legacy_clients(json_response: bool, stateless: bool) -> None:
    async with http_upstream("alpha", json_response=json_response, stateless=stateless) as upstream:
        assert upstream.url == f"http://127.0.0.1:{upstream.port}/mcp"
        async with Client(upstream.url, mode="auto") as client:
            assert_era(client, "modern")
            await assert_basic_calls(client, "alpha")
        async with Client(upstream.url, mode="legacy") as client:
            assert_era(client, "handshake")
            await assert_basic_calls(client, "alpha")


# --- HTTP, handshake era only -------------------------------------------------------------


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_http_handshake_only_makes_auto_client_fall_back(stateless: bool) -> None:
    async with http_upstream("old", era="handshake", stateless=stateless) as upstream:
        async with Client(upstream.url, mode="auto") as client:
            assert_era(client, "handshake")
            await assert_basic_calls(client, "old")
        async with Client(upstream.url, mode="legacy") as client:
            assert_era(client, "handshake")
            await assert_basic_calls(client, "old")


async def test_http_handshake_only_answers_modern_probe_like_a_2025_sdk_server() -> None:
    async with http_upstream("old", era="handshake") as upstream:
        status, content_type, body = await asyncio.to_thread(
            post_json, upstream.url, DISCOVER, {"MCP-Protocol-Version": MODERN}
        )
    assert status == 400
    assert content_type == "application/json"
    assert body == (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: Missing session ID"}}')


async def test_http_handshake_only_stateless_rejects_modern_version_like_a_2025_sdk_server() -> None:
    async with http_upstream("old", era="handshake", stateless=True) as upstream:
        status, _, body = await asyncio.to_thread(post_json, upstream.url, DISCOVER, {"MCP-Protocol-Version": MODERN})
    assert status == 400
    error = json.loads(body)
    assert error["id"] is None
    assert error["error"]["code"] == -32600
    assert error["error"]["message"].startswith(f"Bad Request: Unsupported protocol version: {MODERN}.")


async def test_http_handshake_only_accepts_initialize_whatever_its_version_header() -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
    async with http_upstream("old", era="handshake", json_response=True) as upstream:
        status, _, body = await asyncio.to_thread(post_json, upstream.url, initialize, {"MCP-Protocol-Version": MODERN})
    assert status == 200
    assert json.loads(body)["result"]["protocolVersion"] == "2025-06-18"


# --- stdio --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "auto_era"), [("both", "modern"), ("handshake", "handshake")], ids=["both", "handshake"]
)
async def test_stdio_serves_auto_and_legacy_clients(era: str, auto_era: str) -> None:
    params = stdio_params(stdio_upstream_command("beta", era=era))
    async with Client(params, mode="auto") as client:
        assert_era(client, auto_era)
        await assert_basic_calls(client, "beta")
    async with Client(params, mode="legacy") as client:
        assert_era(client, "handshake")
        await assert_basic_calls(client, "beta")


async def test_stdio_handshake_only_answers_discover_with_method_not_found() -> None:
    async with stdio_process(stdio_upstream_command("old", era="handshake")) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        assert await asyncio.wait_for(process.stderr.readline(), 20) == b"upstream old started\n"
        process.stdin.write(json.dumps(DISCOVER).encode() + b"\n")
        await process.stdin.drain()
        reply = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32601
    assert reply["error"]["message"] == "Method not found"


async def test_stdio_both_eras_answers_discover() -> None:
    async with stdio_process(stdio_upstream_command("new")) as process:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(DISCOVER).encode() + b"\n")
        await process.stdin.drain()
        reply = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
    assert reply["id"] == 7
    assert MODERN in reply["result"]["supportedVersions"]


# --- what the fixture serves --------------------------------------------------------------


async def test_extra_tools_are_listed_and_echo_their_name() -> None:
    async with http_upstream("many", extra_tools=120) as upstream, Client(upstream.url) as client:
        tools = await client.list_tools()
        names = [tool.name for tool in tools.tools]
        assert len(names) == 120 + len(BASE_TOOLS)
        assert set(names) == BASE_TOOLS | {f"t{index:03d}" for index in range(120)}
        result = await client.call_tool("t042", {})
        assert [block.text for block in result.content] == ["t042"]  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_page_size_paginates_tools_list(mode: str) -> None:
    params = stdio_params(stdio_upstream_command("paged", extra_tools=120, page_size=50))
    async with Client(params, mode=mode) as client:
        names: list[str] = []
        sizes: list[int] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            names += [tool.name for tool in page.tools]
            sizes.append(len(page.tools))
            cursor = page.next_cursor
            if cursor is None:
                break
    assert sizes == [50, 50, 20 + len(BASE_TOOLS)]
    assert len(set(names)) == 120 + len(BASE_TOOLS)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_resources_prompt_and_completion(mode: str) -> None:
    async with http_upstream("gamma") as upstream, Client(upstream.url, mode=mode) as client:
        echoed = await client.call_tool("echo", {"text": "  héllo\n"})
        assert [block.text for block in echoed.content] == ["  héllo\n"]  # type: ignore[union-attr]

        failed = await client.call_tool("fail", {"message": "boom"})
        assert failed.is_error
        assert "boom" in failed.content[0].text  # type: ignore[union-attr]

        slow = await client.call_tool("slow", {"seconds": 0.05})
        assert [block.text for block in slow.content] == ["done"]  # type: ignore[union-attr]

        resources = await client.list_resources()
        assert {str(resource.uri) for resource in resources.resources} == {
            "ui://gamma/page",
            "file:///gamma/readme.txt",
        }
        page = await client.read_resource("ui://gamma/page")
        assert page.contents[0].text == "<h1>gamma</h1>"  # type: ignore[union-attr]
        assert page.contents[0].mime_type == "text/html"
        readme = await client.read_resource("file:///gamma/readme.txt")
        assert readme.contents[0].text == "readme of gamma"  # type: ignore[union-attr]

        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == ["mem://gamma/{key}"]
        memory = await client.read_resource("mem://gamma/k1")
        assert memory.contents[0].text == "gamma:k1"  # type: ignore[union-attr]

        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert prompt.messages[0].content.text == "Hello, Ada, from gamma"  # type: ignore[union-attr]

        completion = await client.complete(
            PromptReference(type="ref/prompt", name="greet"), {"name": "name", "value": "b"}
        )
        assert completion.completion.values == ["bob"]


# --- process lifecycle --------------------------------------------------------------------


async def test_kill_makes_the_port_refuse_connections() -> None:
    upstream = await start_http_upstream("doomed")
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
        writer.close()
        await writer.wait_closed()
    finally:
        await upstream.kill()
    assert upstream.process.returncode is not None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", upstream.port)


async def test_leaving_http_upstream_stops_it_cleanly() -> None:
    async with http_upstream("polite") as upstream:
        pass
    assert upstream.process.returncode == 0


@pytest.mark.parametrize("era", ["both", "handshake"])
async def test_stdio_upstream_exits_0_on_sigterm(era: str) -> None:
    async with stdio_process(stdio_upstream_command("quitter", era=era)) as process:
        assert process.stderr is not None
        assert await asyncio.wait_for(process.stderr.readline(), 20) == b"upstream quitter started\n"
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_crash_tool_ends_the_process_with_status_3() -> None:
    async with http_upstream("fragile") as upstream:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's exact wrapping of a dropped connection is not ours
            async with Client(upstream.url) as client:
                await client.call_tool("crash", {})
        assert await asyncio.wait_for(upstream.process.wait(), 10) == 3


# --- example servers ----------------------------------------------------------------------


async def test_weather_example_starts_on_port_0_and_lists_tools() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "weather_http.py"), "--port", "0", stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        match = re.fullmatch(r"weather server listening on (http://127\.0\.0\.1:(\d+)/mcp)\n", line)
        assert match, line
        assert match.group(2) != "0"
        async with Client(match.group(1)) as client:
            tools = await client.list_tools()
            assert {tool.name for tool in tools.tools} == {"forecast", "current"}
            forecast = await client.call_tool("forecast", {"city": "Lisbon", "days": 2})
            assert not forecast.is_error
            cities = await client.read_resource("weather://cities")
            assert "Lisbon" in cities.contents[0].text  # type: ignore[union-attr]
    finally:
        process.terminate()
        await process.wait()
        await process.stderr.read()


async def test_notes_example_answers_tools_list() -> None:
    params = StdioServerParameters(command=sys.executable, args=[str(EXAMPLES / "notes_stdio.py")])
    async with Client(params) as client:
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == {"add_note", "list_notes", "read_note"}
        await client.call_tool("add_note", {"title": "groceries", "body": "eggs"})
        note = await client.read_resource("notes://groceries")
        assert note.contents[0].text == "eggs"  # type: ignore[union-attr]
