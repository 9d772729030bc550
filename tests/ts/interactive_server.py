"""An MCP server that talks back to its client, for the TS driver's handler and notification ops.

``python tests/ts/interactive_server.py`` serves Streamable HTTP (SSE answers) on 127.0.0.1 at an
ephemeral port and prints ``READY <port>`` once it accepts connections. Its tools: ``progress``
(N progress notifications on the call's stream), ``ask`` (elicitation), ``sample`` (sampling),
``roots`` (roots/list) and ``notify`` (resources/updated and tools/list_changed on the standalone
GET stream). Exits with status 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import SamplingMessage, TextContent
from pydantic import BaseModel

from toolway.testing.serving import ReadyServer


class Answer(BaseModel):
    name: str


def build() -> MCPServer:
    server: MCPServer = MCPServer("interactive", log_level="WARNING")

    @server.tool(description="Report `steps` progress notifications, then return 'done'.")
    async def progress(steps: int, ctx: Context) -> str:
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
        return "done"

    @server.tool(description="Elicit a name; return '<action>:<name>'.")
    async def ask(ctx: Context) -> str:
        result = await ctx.elicit("Your name?", Answer)
        name = result.data.name if result.action == "accept" else ""
        return f"{result.action}:{name}"

    @server.tool(description="Ask the client's model; return its text.")
    async def sample(ctx: Context) -> str:
        message = SamplingMessage(role="user", content=TextContent(type="text", text="hello?"))
        result = await ctx.session.create_message([message], max_tokens=16)
        content = result.content
        return content.text if isinstance(content, TextContent) else repr(content)

    @server.tool(description="Return the client's root URIs, comma-separated.")
    async def roots(ctx: Context) -> str:
        result = await ctx.session.list_roots()
        return ",".join(str(root.uri) for root in result.roots)

    @server.tool(description="Send resources/updated for `uri` and tools/list_changed.")
    async def notify(uri: str, ctx: Context) -> str:
        await ctx.session.send_resource_updated(uri)
        await ctx.session.send_tool_list_changed()
        return "sent"

    return server


def main() -> None:
    warnings.simplefilter("ignore")  # the 2026-07-28 deprecations of sampling, roots, logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = build().streamable_http_app(json_response=False)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    asyncio.run(ReadyServer(config, name="interactive").serve())


if __name__ == "__main__":
    main()
