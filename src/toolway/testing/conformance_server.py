"""The fixture server for the official MCP conformance suite, built on the SDK's ``MCPServer``.

Run it as ``python -m toolway.testing.conformance_server [--transport stdio|http] [--port N]``.
It serves every fixture the server scenarios of ``@modelcontextprotocol/conformance`` 0.1.16
call by name (``test_simple_text``, ``test_sampling``, ``test://static-text``,
``test_prompt_with_arguments``, ...; the list is in ``docs/conformance.md``), answering as they
expect, plus ``completion/complete``, ``logging/setLevel`` and ``resources/(un)subscribe``.

Over http (127.0.0.1 only, DNS-rebinding protection on, SSE responses with an in-memory event
store so streams can be resumed) it prints exactly one line, ``READY <port>``, to stdout once it
accepts connections at ``http://127.0.0.1:<port>/mcp``. Over stdio, stdout carries nothing but
protocol. Logs go to stderr; SIGTERM or SIGINT ends it with status 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any, NoReturn, get_args

import anyio
import mcp_types as types
import uvicorn
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from toolway.testing.serving import ReadyServer

__all__ = ["MemoryEventStore", "build_server", "main"]

HOST = "127.0.0.1"
SERVER_NAME = "toolway-conformance"
# A 1x1 PNG and a tiny WAV file: the smallest valid media for the content scenarios.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)  # debug ... emergency
INPUT_KEY = "input"  # the one key of our InputRequiredResult.input_requests (2026-07-28)
STEP_SECONDS = 0.05  # the pause between log or progress notifications the scenarios ask for
# What the suite's json-schema-2020-12 scenario lists (SEP-1613; the pre-release adds SEP-2106's
# $anchor, allOf/anyOf and if/then/else).
JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
ELICITATION_SCHEMA = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}
SEP1034_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
}
SEP1330_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}


class MemoryEventStore(EventStore):
    """The SSE events of the last ``capacity`` messages, so a client can resume a closed stream."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[tuple[int, StreamId, types.JSONRPCMessage | None]] = deque(maxlen=capacity)
        self._next_id = 0

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        self._next_id += 1
        self._events.append((self._next_id, stream_id, message))
        return str(self._next_id)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if not last_event_id.isdigit():
            return None
        last = int(last_event_id)
        stream = next((s for event_id, s, _ in self._events if event_id == last), None)
        if stream is None:
            return None
        for event_id, event_stream, message in list(self._events):
            # Priming events (no message) are markers only; they are never replayed.
            if event_id > last and event_stream == stream and message is not None:
                await send_callback(EventMessage(message, str(event_id)))
        return stream


def build_server() -> MCPServer:
    """Build the conformance fixture server (a fresh one per call, with its own state)."""
    # The 2020-12 keywords ($schema, $defs, additionalProperties) cannot come out of a Python
    # signature, so this tool carries a hand-written input schema.
    schema_tool = Tool.from_function(
        _json_schema_tool,
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
    ).model_copy(update={"parameters": JSON_SCHEMA_2020_12})
    # log_level WARNING: the SDK otherwise configures the root logger at INFO.
    server: MCPServer = MCPServer(SERVER_NAME, version="1.0.0", log_level="WARNING", tools=[schema_tool])
    log_level: list[types.LoggingLevel] = ["debug"]  # set by logging/setLevel; shared by every client
    subscriptions: set[str] = set()

    async def log(ctx: Context, level: types.LoggingLevel, message: str) -> None:
        if LOG_LEVELS.index(level) >= LOG_LEVELS.index(log_level[0]):
            await ctx.log(level, message)

    @server.tool(description="Return a simple text response.")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @server.tool(description="Return a 1x1 PNG image.")
    def test_image_content() -> list[types.ImageContent]:
        return [types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png")]

    @server.tool(description="Return a short WAV clip.")
    def test_audio_content() -> list[types.AudioContent]:
        return [types.AudioContent(type="audio", data=WAV_BASE64, mime_type="audio/wav")]

    @server.tool(description="Return an embedded text resource.")
    def test_embedded_resource() -> list[types.EmbeddedResource]:
        return [_embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]

    @server.tool(description="Return text, image and resource content together.")
    def test_multiple_content_types() -> list[types.TextContent | types.ImageContent | types.EmbeddedResource]:
        return [
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png"),
            _embedded("test://mixed-content-resource", "application/json", '{"test":"data","value":123}'),
        ]

    @server.tool(description="Always fail: a tool result with isError true.")
    def test_error_handling() -> types.CallToolResult:
        # A result of our own, not a ToolError: the SDK would prefix the message.
        text = "This tool intentionally returns an error for testing"
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)

    @server.tool(description="Send three info log notifications while running.")
    async def test_tool_with_logging(ctx: Context) -> str:
        await log(ctx, "info", "Tool execution started")
        await anyio.sleep(STEP_SECONDS)
        await log(ctx, "info", "Tool processing data")
        await anyio.sleep(STEP_SECONDS)
        await log(ctx, "info", "Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool(description="Report progress 0, 50 and 100 of 100 when given a progress token.")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step in (0, 50, 100):
            if step:
                await anyio.sleep(STEP_SECONDS)
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        return "Tool with progress executed successfully"

    @server.tool(description="Ask the client's LLM (sampling/createMessage) to answer the prompt.")
    async def test_sampling(prompt: str, ctx: Context) -> str | types.InputRequiredResult:
        if not ctx.session.check_client_capability(types.ClientCapabilities(sampling=types.SamplingCapability())):
            raise ToolError("The client does not support sampling")
        message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
        params = types.CreateMessageRequestParams(messages=[message], max_tokens=100)
        answer = await _ask(ctx, types.CreateMessageRequest(params=params))
        if not isinstance(answer, types.CreateMessageResult):
            return _not_an_answer(answer)
        blocks = answer.content if isinstance(answer.content, list) else [answer.content]
        text = " ".join(block.text for block in blocks if isinstance(block, types.TextContent)) or "(no text)"
        return f"LLM response: {text}"

    @server.tool(description="Ask the user (elicitation/create) for a username and an email address.")
    async def test_elicitation(message: str, ctx: Context) -> str | types.InputRequiredResult:
        return await _elicit(ctx, "User response: ", message, ELICITATION_SCHEMA)

    @server.tool(description="Elicit a form whose fields all have defaults (SEP-1034).")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str | types.InputRequiredResult:
        return await _elicit(ctx, "Elicitation completed: ", "Please review your information", SEP1034_SCHEMA)

    @server.tool(description="Elicit a form with every enum variant (SEP-1330).")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str | types.InputRequiredResult:
        return await _elicit(ctx, "Elicitation completed: ", "Please pick some options", SEP1330_SCHEMA)

    @server.tool(description="Close the SSE stream mid-call, then answer on the resumed stream (SEP-1699).")
    async def test_reconnection(ctx: Context) -> str:
        await log(ctx, "info", "Before disconnect")
        await ctx.close_sse_stream()  # a no-op without an event store or before 2025-11-25
        await anyio.sleep(0.2)
        await log(ctx, "info", "After reconnect")
        return "Reconnection test completed"

    @server.resource(
        "test://static-text",
        name="static-text",
        description="A static text resource.",
        mime_type="text/plain",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource(
        "test://static-binary", name="static-binary", description="A 1x1 PNG image.", mime_type="image/png"
    )
    def static_binary() -> bytes:
        return base64.b64decode(PNG_BASE64)

    @server.resource(
        "test://watched-resource",
        name="watched-resource",
        description="Subscribe to it.",
        mime_type="text/plain",
    )
    def watched_resource() -> str:
        return "Watched resource content"

    @server.resource(
        "test://template/{id}/data",
        name="template-data",
        description="Data for one id.",
        mime_type="application/json",
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))

    @server.prompt(description="A simple prompt without arguments.")
    def test_simple_prompt() -> list[UserMessage]:
        return [UserMessage(content=types.TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt(description="A prompt with two required arguments.")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(content=types.TextContent(type="text", text=text))]

    @server.prompt(description="A prompt that embeds the resource at resourceUri.")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        return [
            UserMessage(content=_embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
            UserMessage(content=types.TextContent(type="text", text="Please process the embedded resource above.")),
        ]

    @server.prompt(description="A prompt with an image.")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(content=types.ImageContent(type="image", data=PNG_BASE64, mime_type="image/png")),
            UserMessage(content=types.TextContent(type="text", text="Please analyze the image above.")),
        ]

    # The SDK's completion() decorator carries no annotations.
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion | None:
        if isinstance(ref, types.PromptReference) and ref.name == "test_prompt_with_arguments":
            values = [v for v in ("paris", "park", "party") if v.startswith(argument.value)]
            return types.Completion(values=values, total=len(values), has_more=False)
        return types.Completion(values=[], total=0, has_more=False)

    # MCPServer has no decorators for these; its low-level server takes (ctx, params) handlers.
    # mcp.Client and upstream.py reach the low-level server the same way.
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]

    async def set_level(ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        log_level[0] = params.level
        return types.EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        subscriptions.discard(str(params.uri))
        return types.EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    return server


def _json_schema_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    return json.dumps(
        {"name": name, "address": address, "contactMethod": contactMethod, "phone": phone, "email": email}
    )


def _embedded(uri: str, mime_type: str, text: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(
        type="resource", resource=types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    )


async def _elicit(ctx: Context, prefix: str, message: str, schema: dict[str, Any]) -> str | types.InputRequiredResult:
    if not ctx.session.check_client_capability(types.ClientCapabilities(elicitation=types.ElicitationCapability())):
        raise ToolError("The client does not support elicitation")
    params = types.ElicitRequestFormParams(message=message, requested_schema=schema)
    answer = await _ask(ctx, types.ElicitRequest(params=params))
    if not isinstance(answer, types.ElicitResult):
        return _not_an_answer(answer)
    content = json.dumps(answer.content or {}, separators=(",", ":"))
    return f"{prefix}action={answer.action}, content={content}"


async def _ask(
    ctx: Context, request: types.CreateMessageRequest | types.ElicitRequest
) -> types.InputResponse | types.InputRequiredResult:
    """Put ``request`` to the client, in the way of the protocol version the call came in with.

    Up to 2025-11-25 it goes over the back-channel while the tool runs. From 2026-07-28 on there
    is no back-channel: the tool returns an ``InputRequiredResult`` asking for it, and the client
    calls again with the answer in ``inputResponses``.
    """
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        answer = (ctx.input_responses or {}).get(INPUT_KEY)
        return answer if answer is not None else types.InputRequiredResult(input_requests={INPUT_KEY: request})
    metadata = ServerMessageMetadata(related_request_id=ctx.request_context.request_id)
    result: types.InputResponse  # send_request's own annotation does not reach mypy
    if isinstance(request, types.CreateMessageRequest):
        result = await ctx.session.send_request(request, types.CreateMessageResult, metadata=metadata)
    else:
        result = await ctx.session.send_request(request, types.ElicitResult, metadata=metadata)
    return result


def _not_an_answer(answer: types.InputResponse | types.InputRequiredResult) -> types.InputRequiredResult:
    """Pass an ``InputRequiredResult`` on; anything else answered a question we did not ask."""
    if isinstance(answer, types.InputRequiredResult):
        return answer
    raise ToolError(f"Unexpected answer to the input request: {type(answer).__name__}")


async def _serve_http(server: MCPServer, port: int) -> None:
    app = server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=100, host=HOST)
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    await ReadyServer(config, name=SERVER_NAME).serve()


async def _serve_stdio(server: MCPServer) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_exit_on_signal)
        await server.run_stdio_async()
        tg.cancel_scope.cancel()


async def _exit_on_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            _exit_now(signum)


def _exit_now(signum: int) -> NoReturn:
    sys.stderr.write(f"{SERVER_NAME} stopping on {signal.Signals(signum).name}\n")
    sys.stderr.flush()
    # The SDK reads stdin in a worker thread that no cancellation interrupts; nothing to flush.
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fixture server as the command line in ``argv`` asks; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m toolway.testing.conformance_server",
        description="Fixture MCP server for the official conformance suite.",
    )
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=0, help="http: port on 127.0.0.1 (default 0, ephemeral)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # Logging notifications are what the scenarios test; the SDK flags them as deprecated in 2026.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    server = build_server()
    logging.getLogger().setLevel(logging.WARNING)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: _exit_now(received))
    sys.stderr.write(f"{SERVER_NAME} started ({args.transport})\n")
    sys.stderr.flush()
    if args.transport == "http":
        anyio.run(_serve_http, server, args.port)
    else:
        anyio.run(_serve_stdio, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
