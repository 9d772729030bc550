"""The conformance fixture server answers as the official conformance suite expects.

No Node here: the official Python SDK's client is the peer, over HTTP and stdio, in both eras
(``mode="legacy"`` forces the 2025 handshake; ``mode="auto"`` lands on 2026-07-28). The features
that need a channel back to the client in the 2025 era (sampling, elicitation, logging, progress,
subscriptions) are checked with the handshake, which is what the stable suite speaks.
``scripts/conformance.sh`` runs the suite itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    LoggingMessageNotificationParams,
    PromptReference,
    TextContent,
    TextResourceContents,
)

MODULE = "toolway.testing.conformance_server"
# The names the stable suite (0.1.16) calls, grouped as the server lists them.
TOOLS = {
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_error_handling",
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "test_reconnection",
    "json_schema_2020_12_tool",
}
RESOURCES = {"test://static-text", "test://static-binary", "test://watched-resource"}
PROMPTS = {
    "test_simple_prompt",
    "test_prompt_with_arguments",
    "test_prompt_with_embedded_resource",
    "test_prompt_with_image",
}
STDIO = StdioServerParameters(command=sys.executable, args=["-m", MODULE, "--transport", "stdio"])


@contextlib.asynccontextmanager
async def http_fixture() -> AsyncIterator[str]:
    """Run the fixture over HTTP on an ephemeral port; yield its URL; stop it (bounded) on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        MODULE,
        "--transport",
        "http",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        word, _, port = line.strip().partition(" ")
        assert word == "READY" and port.isdigit(), f"expected READY <port>, got {line!r}"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(10):
                status = await process.wait()
        except TimeoutError:
            process.kill()
            status = await process.wait()
    assert status == 0


@contextlib.asynccontextmanager
async def fixture_client(transport: str, mode: str, **callbacks: Any) -> AsyncIterator[Client]:
    if transport == "stdio":
        async with Client(STDIO, mode=mode, **callbacks) as client:
            yield client
        return
    async with http_fixture() as url, Client(url, mode=mode, **callbacks) as client:
        yield client


def texts(content: list[Any]) -> list[str]:
    return [block.text for block in content if isinstance(block, TextContent)]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_tools_resources_prompts_and_completion(transport: str, mode: str) -> None:
    async with fixture_client(transport, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) >= TOOLS
        assert all(tool.description for tool in tools.values())
        schema = tools["json_schema_2020_12_tool"].input_schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert set(schema["$defs"]) == {"address"}
        assert schema["additionalProperties"] is False
        assert {str(r.uri) for r in (await client.list_resources()).resources} >= RESOURCES
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["test://template/{id}/data"]
        assert {prompt.name for prompt in (await client.list_prompts()).prompts} >= PROMPTS

        simple = await client.call_tool("test_simple_text", {})
        assert texts(simple.content) == ["This is a simple text response for testing."]
        image = (await client.call_tool("test_image_content", {})).content
        assert isinstance(image[0], ImageContent) and image[0].mime_type == "image/png"
        assert base64.b64decode(image[0].data).startswith(b"\x89PNG")
        audio = (await client.call_tool("test_audio_content", {})).content[0]
        assert audio.type == "audio" and audio.mime_type == "audio/wav"
        mixed = (await client.call_tool("test_multiple_content_types", {})).content
        assert [block.type for block in mixed] == ["text", "image", "resource"]
        error = await client.call_tool("test_error_handling", {})
        assert error.is_error
        assert texts(error.content) == ["This tool intentionally returns an error for testing"]

        text = (await client.read_resource("test://static-text")).contents[0]
        assert isinstance(text, TextResourceContents) and text.mime_type == "text/plain"
        assert text.text == "This is the content of the static text resource."
        binary = (await client.read_resource("test://static-binary")).contents[0]
        assert binary.mime_type == "image/png" and getattr(binary, "blob", None)
        templated = (await client.read_resource("test://template/123/data")).contents[0]
        assert isinstance(templated, TextResourceContents) and templated.mime_type == "application/json"
        assert json.loads(templated.text) == {"id": "123", "templateTest": True, "data": "Data for ID: 123"}

        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"})
        assert [m.content.text for m in prompt.messages] == [  # type: ignore[union-attr]
            "Prompt with arguments: arg1='hello', arg2='world'"
        ]
        embedded = await client.get_prompt("test_prompt_with_embedded_resource", {"resourceUri": "test://x"})
        resource = embedded.messages[0].content
        assert isinstance(resource, EmbeddedResource) and str(resource.resource.uri) == "test://x"
        image = await client.get_prompt("test_prompt_with_image")
        assert isinstance(image.messages[0].content, ImageContent)

        ref = PromptReference(type="ref/prompt", name="test_prompt_with_arguments")
        completion = (await client.complete(ref, {"name": "arg1", "value": "par"})).completion
        assert completion.values == ["paris", "park", "party"]


class Peer:
    """The client side of sampling and elicitation: answers, and records what it was asked."""

    def __init__(self) -> None:
        self.sampled: list[CreateMessageRequestParams] = []
        self.elicited: list[ElicitRequestParams] = []
        self.logs: list[LoggingMessageNotificationParams] = []

    async def sampling(self, context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.sampled.append(params)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="four"), model="m")

    async def elicitation(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.elicited.append(params)
        return ElicitResult(action="accept", content={"username": "ann", "email": "ann@example.com"})

    async def logging(self, params: LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def callbacks(self) -> dict[str, Any]:
        return {
            "sampling_callback": self.sampling,
            "elicitation_callback": self.elicitation,
            "logging_callback": self.logging,
        }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_sampling_and_elicitation_in_both_eras(transport: str, mode: str) -> None:
    """2025: requests over the back-channel mid-call; 2026-07-28: an InputRequiredResult, then a retry."""
    peer = Peer()
    async with fixture_client(transport, mode, **peer.callbacks()) as client:
        if mode == "auto":
            asked = await client.session.call_tool("test_sampling", {"prompt": "2+2?"}, allow_input_required=True)
            assert isinstance(asked, InputRequiredResult)
            assert [request.method for request in asked.input_requests.values()] == ["sampling/createMessage"]
        answer = await client.call_tool("test_sampling", {"prompt": "2+2?"})
        assert texts(answer.content) == ["LLM response: four"]
        assert peer.sampled[-1].max_tokens == 100
        assert texts([peer.sampled[-1].messages[0].content]) == ["2+2?"]

        answer = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        assert texts(answer.content) == [
            'User response: action=accept, content={"username":"ann","email":"ann@example.com"}'
        ]
        assert peer.elicited[0].message == "Who are you?"
        assert peer.elicited[0].requested_schema["required"] == ["username", "email"]  # type: ignore[union-attr]
        await client.call_tool("test_elicitation_sep1034_defaults", {})
        defaults = peer.elicited[1].requested_schema["properties"]  # type: ignore[union-attr]
        assert {name: field["default"] for name, field in defaults.items()} == {
            "name": "John Doe",
            "age": 30,
            "score": 95.5,
            "status": "active",
            "verified": True,
        }


@pytest.mark.parametrize("transport", ["http", "stdio"])
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_logging_progress_and_subscriptions_in_the_handshake_era(transport: str) -> None:
    peer = Peer()
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with fixture_client(transport, "legacy", **peer.callbacks()) as client:
        await client.set_logging_level("debug")
        await client.call_tool("test_tool_with_logging", {})
        assert [(log.level, log.data) for log in peer.logs] == [
            ("info", "Tool execution started"),
            ("info", "Tool processing data"),
            ("info", "Tool execution completed"),
        ]
        await client.set_logging_level("warning")
        await client.call_tool("test_tool_with_logging", {})
        assert len(peer.logs) == 3

        await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        assert progress == [(0, 100), (50, 100), (100, 100)]

        await client.subscribe_resource("test://watched-resource")
        await client.unsubscribe_resource("test://watched-resource")
