"""Fixture tools that talk back: progress, logs, elicitation, sampling, roots, list and resource changes.

Added to the fixture upstream by `build_server`. They use the SDK's resolvers
(`Resolve` with `Elicit`, `Sample`, `ListRoots`), which ask the client mid-call in the
handshake era and answer `input_required` in the 2026-07-28 era — so the same tool
exercises the gateway's relaying in one era and its bridge in the other.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import anyio
import mcp_types as types
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from pydantic import BaseModel


class Answer(BaseModel):
    answer: str


def _question(question: str) -> Elicit[Answer]:
    return Elicit(question, Answer)


def _sampling(prompt: str) -> Sample:
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
    return Sample([message], max_tokens=64)


def _roots() -> ListRoots:
    return ListRoots()


def add_duplex_tools(server: MCPServer, name: str) -> None:
    """Register the talking-back tools and the subscription handlers on `server`."""
    subscribed: set[str] = set()

    @server.tool(description="Report `steps` progress notifications, `delay` seconds apart, then return.")
    async def progress(steps: int, ctx: Context, delay: float = 0.0) -> str:
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"{name} step {step}")
            if delay:
                await anyio.sleep(delay)
        return f"{name} counted {steps}"

    @server.tool(description="Send one log message at `level`, then return.")
    async def log(level: str, message: str, ctx: Context) -> str:
        await ctx.log(level, message)  # type: ignore[arg-type]
        return "logged"

    @server.tool(description="Ask the user a question (elicitation) and return the answer.")
    def ask(question: str, reply: Annotated[Answer, Resolve(_question)]) -> str:
        return f"{name} heard: {reply.answer}"

    @server.tool(description="Send the user to a URL (URL-mode elicitation); announce completion after consent.")
    async def visit(url: str, ctx: Context) -> str:
        elicitation_id = f"{name}-visit"
        outcome = await ctx.elicit_url("Please visit this page", url, elicitation_id)
        if outcome.action == "accept":
            await ctx.session.send_elicit_complete(elicitation_id)
        return f"{name} visit: {outcome.action}"

    @server.tool(description="Ask the client's model (sampling) and return what it said.")
    def sample(prompt: str, result: Annotated[types.CreateMessageResult, Resolve(_sampling)]) -> str:
        content = result.content
        text = content.text if isinstance(content, types.TextContent) else "?"
        return f"{name} sampled: {text}"

    @server.tool(description="List the client's roots.")
    def roots(result: Annotated[types.ListRootsResult, Resolve(_roots)]) -> str:
        return ",".join(str(root.uri) for root in result.roots)

    @server.tool(description="Add a tool named `tool` and announce that the tool list changed.")
    async def grow(tool: str, ctx: Context) -> str:
        server.add_tool(lambda: tool, name=tool, description=f"Grown by {name}.")
        with contextlib.suppress(Exception):
            await ctx.notify_tools_changed()  # 2026-07-28 listeners
        with contextlib.suppress(Exception):
            await ctx.session.send_tool_list_changed()  # handshake-era sessions
        return f"{name} grew {tool}"

    @server.tool(description="Give the tool `tool` a new description; announce the change unless `announce` is false.")
    async def redescribe(tool: str, description: str, ctx: Context, announce: bool = True) -> str:
        # A "rug pull" on purpose: the gateway's pins must notice (registry/pinning.py).
        existing = server._tool_manager.get_tool(tool)
        if existing is None:
            raise ToolError(f"no tool named {tool!r}")
        server.remove_tool(tool)
        server.add_tool(existing.fn, name=tool, title=existing.title, description=description)
        if not announce:  # only a gateway that re-lists on a timer will notice
            return f"{name} redescribed {tool} quietly"
        with contextlib.suppress(Exception):
            await ctx.notify_tools_changed()  # 2026-07-28 listeners
        with contextlib.suppress(Exception):
            await ctx.session.send_tool_list_changed()  # handshake-era sessions
        return f"{name} redescribed {tool}"

    @server.tool(description="Announce that mem://NAME/{key} changed.")
    async def touch(key: str, ctx: Context) -> str:
        uri = f"mem://{name}/{key}"
        with contextlib.suppress(Exception):
            await ctx.notify_resource_updated(uri)
        if uri in subscribed:
            with contextlib.suppress(Exception):
                await ctx.session.send_resource_updated(uri)
        return f"{name} touched {uri}"

    @server.tool(description="How many URIs the gateway has subscribed to here.")
    def subscriptions() -> str:
        return ",".join(sorted(subscribed))

    lowlevel = server._lowlevel_server  # MCPServer has no decorator for these handlers.

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscribed.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        subscribed.discard(str(params.uri))
        return types.EmptyResult()

    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
