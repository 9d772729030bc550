"""A fixture MCP server for tests, built on the official SDK's ``MCPServer``.

Run it as ``python -m toolway.testing.upstream --name NAME [options]``::

    --name NAME                      required; appears in tool results, resources and log lines
    --transport stdio|http|sse|ws    default stdio; sse is the 2024-11-05 HTTP+SSE transport
    --era both|handshake             default both; ``handshake`` acts like a pre-2026-07-28 server
    --port N                         http, sse, ws; default 0 (ephemeral); binds 127.0.0.1
    --json-response / --sse-response http only; default --sse-response
    --stateless                      http only; the SDK's stateless_http mode
    --extra-tools N                  add tools t000..t(N-1), each returning its own name
    --page-size N                    paginate tools/list, N tools a page (0, the default: one page)
    --journal PATH                   also append the keys of the ``record`` tool to this file
    --record-headers FILE            http, sse, ws: append each request's headers to FILE (JSON lines)

What it serves: tools ``echo``, ``add``, ``whoami``, ``slow``, ``fail`` and ``crash``, and the
tools that talk back from ``duplex_tools`` (``progress``, ``log``, ``ask``, ``sample``, ``roots``,
``grow``, ``redescribe``, ``touch``, ``subscriptions``), the routing tools from ``routing_tools``
(``replica``, ``record``, ``journal``, ``pid``) and ``session`` from ``session_ledger`` (which
session a call came on; over http, ``/debug/sessions`` lists the sessions open); the prompt
``greet`` (with completion of its ``name`` argument); the resources ``ui://NAME/page`` and
``file:///NAME/readme.txt``; the resource template ``mem://NAME/{key}``.

Over http, sse and ws the process prints exactly one line, ``READY <port>``, to stdout once it
accepts connections. It serves Streamable HTTP at ``/mcp``, the HTTP+SSE stream at ``/sse`` (messages
to ``/messages/``, as the SDK's ``sse_app``), and WebSocket (subprotocol ``mcp``) at ``ws://…/mcp``.
Over stdio, stdout carries nothing but protocol. Either way it writes
``upstream NAME started`` to stderr first, logs to stderr, and exits with status 0 on SIGTERM
or SIGINT (status 3 when the ``crash`` tool is called).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, Completion, PromptReference

from toolway.testing.duplex_tools import add_duplex_tools
from toolway.testing.routing_tools import add_routing_tools
from toolway.testing.serving import exit_now, serve_http, serve_sse, serve_stdio, serve_ws
from toolway.testing.session_ledger import add_session_tools

__all__ = ["ToolPages", "build_server", "main"]

ERAS = ("both", "handshake")
TRANSPORTS = ("stdio", "http", "sse", "ws")
CRASH_EXIT_CODE = 3
HOST = "127.0.0.1"


def build_server(name: str, *, extra_tools: int = 0, page_size: int = 0, journal: str | None = None) -> MCPServer:
    """Build the fixture server called ``name``.

    Raises:
        ValueError: ``extra_tools`` or ``page_size`` is negative.
    """
    if extra_tools < 0 or page_size < 0:
        raise ValueError("extra_tools and page_size must not be negative")
    # log_level WARNING: the SDK otherwise configures the root logger at INFO.
    server: MCPServer = MCPServer(name, log_level="WARNING")

    @server.tool(description="Return the text unchanged.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Return the name of this upstream.")
    def whoami() -> str:
        return name

    cancelled = [0]

    @server.tool(description="Sleep for the given number of seconds, then return 'done'.")
    async def slow(seconds: float) -> str:
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            cancelled[0] += 1  # the client (through the gateway) cancelled this call
            raise
        return "done"

    @server.tool(description="How many `slow` calls were cancelled so far.")
    def cancellations() -> str:
        return str(cancelled[0])

    @server.tool(description="Fail with the given message (a tool result with isError: true).")
    def fail(message: str) -> str:
        # ToolError, not a bare exception: the SDK then puts our message in the result verbatim.
        raise ToolError(message)

    @server.tool(description=f"Exit the upstream process at once with status {CRASH_EXIT_CODE}.")
    def crash() -> str:
        sys.stderr.write(f"upstream {name} crashing on request\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)

    width = max(3, len(str(extra_tools - 1)))
    for index in range(extra_tools):
        tool_name = f"t{index:0{width}d}"
        server.add_tool(_named_echo(tool_name), name=tool_name, description=f"Return {tool_name!r}.")

    @server.prompt(description="Greet someone on behalf of this upstream.")
    def greet(name: str) -> str:
        return f"Hello, {name}, from {server.name}"

    # The SDK's completion() decorator carries no annotations.
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "name":
            values = [value for value in ("alice", "bob") if value.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    @server.resource(f"ui://{name}/page", name="page", mime_type="text/html")
    def page() -> str:
        return f"<h1>{name}</h1>"

    @server.resource(f"file:///{name}/readme.txt", name="readme", mime_type="text/plain")
    def readme() -> str:
        return f"readme of {name}"

    @server.resource(f"mem://{name}/{{key}}", name="memory", mime_type="text/plain")
    def memory(key: str) -> str:
        return f"{name}:{key}"

    add_duplex_tools(server, name)
    add_routing_tools(server, name, journal)
    add_session_tools(server)
    if page_size:
        server.middleware.append(ToolPages(page_size))
    return server


def _named_echo(tool_name: str) -> Any:
    def tool() -> str:
        return tool_name

    return tool


class ToolPages:
    """Server middleware that serves ``tools/list`` in pages of ``page_size`` tools.

    ``MCPServer`` always answers ``tools/list`` in one page; the protocol's cursor is honoured
    here instead, on the wire result. Cursors are opaque to clients (``offset:N``).
    """

    def __init__(self, page_size: int) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = page_size

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Pass everything through; cut a ``tools/list`` result down to the requested page.

        Raises:
            MCPError: INVALID_PARAMS for a cursor this middleware did not hand out.
        """
        if ctx.method != "tools/list":
            return await call_next(ctx)
        start = _cursor_offset(ctx.params)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        tools = list(result.get("tools") or [])
        end = start + self.page_size
        page = {**result, "tools": tools[start:end]}
        page.pop("nextCursor", None)
        if end < len(tools):
            page["nextCursor"] = f"offset:{end}"
        return page


def _cursor_offset(params: Mapping[str, Any] | None) -> int:
    cursor = (params or {}).get("cursor")
    if cursor is None:
        return 0
    prefix, _, digits = str(cursor).partition(":")
    if prefix != "offset" or not digits.isdigit():
        raise MCPError(code=INVALID_PARAMS, message="Invalid cursor", data=cursor)
    return int(digits)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m toolway.testing.upstream", description="Toolway's fixture MCP server for tests."
    )
    parser.add_argument("--name", required=True, help="the upstream's name, used in its outputs")
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio")
    parser.add_argument("--era", choices=ERAS, default="both", help="handshake: act like a pre-2026 server")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default 0, ephemeral)")
    responses = parser.add_mutually_exclusive_group()
    responses.add_argument("--json-response", dest="json_response", action="store_true", default=None)
    responses.add_argument("--sse-response", dest="json_response", action="store_false")
    parser.add_argument("--stateless", action="store_true", default=None, help="http: stateless_http=True")
    parser.add_argument("--extra-tools", type=int, default=0, metavar="N", help="add tools t000..t(N-1)")
    parser.add_argument("--page-size", type=int, default=0, metavar="N", help="paginate tools/list (0: off)")
    parser.add_argument("--journal", default=None, metavar="PATH", help="append `record` keys to this file")
    parser.add_argument("--record-headers", metavar="FILE", help="http, sse, ws: append each request's headers")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fixture server as the command line in ``argv`` asks; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.transport != "http":
        http_only = {"--json-response/--sse-response": args.json_response, "--stateless": args.stateless}
        given = [flag for flag, value in http_only.items() if value is not None]
        if given:
            parser.error(f"{', '.join(given)}: only with --transport http")
    if args.transport == "stdio" and args.port is not None:
        parser.error("--port: only with --transport http, sse or ws")
    if args.extra_tools < 0 or args.page_size < 0:
        parser.error("--extra-tools and --page-size must not be negative")
    port = 0 if args.port is None else args.port
    if not 0 <= port <= 65535:
        parser.error("--port must be between 0 and 65535")

    # Before the SDK can configure logging: stderr only, WARNING and up.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    server = build_server(args.name, extra_tools=args.extra_tools, page_size=args.page_size, journal=args.journal)
    logging.getLogger().setLevel(logging.WARNING)
    # Until uvicorn or the stdio loop install their own handlers: a SIGTERM right after the
    # line below must end us with status 0 too, not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: exit_now(args.name, received))
    sys.stderr.write(f"upstream {args.name} started\n")
    sys.stderr.flush()

    if args.transport == "http":
        anyio.run(
            lambda: serve_http(
                server,
                era=args.era,
                port=port,
                json_response=bool(args.json_response),
                stateless=bool(args.stateless),
                record_headers=args.record_headers,
            )
        )
    elif args.transport == "sse":
        anyio.run(lambda: serve_sse(server, era=args.era, port=port, record_headers=args.record_headers))
    elif args.transport == "ws":
        anyio.run(lambda: serve_ws(server, era=args.era, port=port, record_headers=args.record_headers))
    else:
        anyio.run(lambda: serve_stdio(server, era=args.era))
    return 0


if __name__ == "__main__":
    sys.exit(main())
