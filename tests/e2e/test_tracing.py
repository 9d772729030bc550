"""One trace from the agent through the gateway to the upstream, over real sockets.

W3C Trace Context (https://www.w3.org/TR/trace-context/): the agent's `traceparent` is
continued, the gateway's request span is the parent of its upstream call span, and the
upstream receives that span's `traceparent` in its HTTP headers and in `params._meta`
(the MCP convention for carrying trace context, which stdio servers rely on).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from mcp import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from toolway.testing import gateway_config, running_gateway
from toolway.testing.wire import modern_request

AGENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AGENT_SPAN = "00f067aa0ba902b7"
AGENT = f"00-{AGENT_TRACE}-{AGENT_SPAN}-01"


@dataclass
class Received:
    headers: dict[str, str]
    params: dict[str, Any]


@dataclass
class TinyUpstream:
    """A minimal stateless-era MCP server (plain JSON answers) that remembers what it was sent."""

    url: str = ""
    received: dict[str, list[Received]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        message = await request.json()
        params = message.get("params") or {}
        self.received.setdefault(message.get("method", ""), []).append(Received(dict(request.headers), params))
        if "id" not in message:
            return web.Response(status=202)
        method = message["method"]
        if method == "server/discover":
            result: dict[str, Any] = {
                "supportedVersions": ["2026-07-28"],
                "capabilities": {"tools": {}},
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "tiny", "version": "0"}},
            }
        elif method == "tools/list":
            tool = {"name": "probe", "inputSchema": {"type": "object"}}
            result = {"tools": [tool], "ttlMs": 60_000, "cacheScope": "public"}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": "probed"}]}
        else:
            error = {"code": -32601, "message": f"Method not found: {method}"}
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})


@dataclass
class Collector:
    """An OTLP/HTTP trace collector: keeps every export request."""

    url: str = ""
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests.append(ExportTraceServiceRequest.FromString(body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    def span_ids(self) -> set[bytes]:
        return {s.span_id for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}


@contextlib.asynccontextmanager
async def _serve(path: str, handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def tiny() -> AsyncIterator[TinyUpstream]:
    upstream = TinyUpstream()
    async with _serve("/mcp", upstream.handle) as url:
        upstream.url = url
        yield upstream


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    collector = Collector()
    async with _serve("/v1/traces", collector.handle) as url:
        collector.url = url
        yield collector


# A handshake-era stdio server in a dozen lines: its one tool answers with the `_meta` it got.
RAW_STDIO_SERVER = textwrap.dedent(
    """
    import json, sys
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue
        method, params = msg["method"], msg.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "raw", "version": "0"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "meta", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": json.dumps(params.get("_meta", {}))}]}
        elif method == "ping":
            result = {}
        else:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "not found"}}
            print(json.dumps(reply), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
    """
)


def _ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


def _hex(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def _only(spans: tuple[ReadableSpan, ...], kind: SpanKind, name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is kind and s.name == name]
    return span


async def test_agent_gateway_upstream_is_one_trace(tiny: TinyUpstream, collector: Collector, tmp_path: Path) -> None:
    servers = [{"name": "tiny", "transport": "streamable-http", "url": tiny.url}]
    config = gateway_config(servers, tmp_path, tracing={"exporter": "otlp-http", "endpoint": collector.url})
    spans = InMemorySpanExporter()
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        gw.gateway.tracing.add_exporter(spans)
        body, headers = modern_request("tools/call", {"name": "tiny__probe", "arguments": {}})
        async with http.post(gw.url, json=body, headers={**headers, "traceparent": AGENT}) as resp:
            answer = await resp.json()
            correlation = resp.headers["x-request-id"]
    # The gateway has shut down: its batch exporter has sent everything to the collector.
    assert answer["result"]["content"][0]["text"] == "probed"
    assert correlation == AGENT_TRACE  # logs and the agent's trace share one id

    finished = spans.get_finished_spans()
    request = _only(finished, SpanKind.SERVER, "tools/call tiny__probe")
    upstream_call = _only(finished, SpanKind.CLIENT, "tools/call tiny__probe")
    assert _hex(request)[0] == AGENT_TRACE
    assert request.parent is not None and f"{request.parent.span_id:016x}" == AGENT_SPAN  # agent -> gateway
    assert upstream_call.parent is not None and upstream_call.parent.span_id == request.context.span_id
    assert _hex(upstream_call)[0] == AGENT_TRACE

    (sent,) = tiny.received["tools/call"]
    assert _ids(sent.headers["traceparent"]) == _hex(upstream_call)  # gateway -> upstream, HTTP header
    assert sent.params["_meta"]["traceparent"] == sent.headers["traceparent"]  # and params._meta
    assert "io.modelcontextprotocol/protocolVersion" in sent.params["_meta"]  # the envelope is intact
    assert all("traceparent" not in r.headers for r in tiny.received["tools/list"])  # no caller, no trace

    exported = collector.span_ids()
    assert request.context.span_id.to_bytes(8, "big") in exported
    assert upstream_call.context.span_id.to_bytes(8, "big") in exported


async def test_stdio_upstream_gets_traceparent_in_meta(tmp_path: Path) -> None:
    script = tmp_path / "raw_server.py"
    script.write_text(RAW_STDIO_SERVER)
    servers = [{"name": "raw", "transport": "stdio", "command": [sys.executable, str(script)]}]
    config = gateway_config(servers, tmp_path, tracing={"exporter": "console"})
    spans = InMemorySpanExporter()
    async with running_gateway(config) as gw:
        gw.gateway.tracing.add_exporter(spans)
        async with Client(gw.url) as client:
            with structlog.testing.capture_logs() as logs:
                result = await client.call_tool("raw__meta", {})
    meta = json.loads(result.content[0].text)  # type: ignore[union-attr]
    request = _only(spans.get_finished_spans(), SpanKind.SERVER, "tools/call raw__meta")
    upstream_call = _only(spans.get_finished_spans(), SpanKind.CLIENT, "tools/call raw__meta")
    assert upstream_call.parent is not None and upstream_call.parent.span_id == request.context.span_id
    assert _ids(meta["traceparent"]) == _hex(upstream_call)
    (line,) = [e for e in logs if e["event"] == "call" and e["method"] == "tools/call"]
    assert line["trace_id"] == _hex(request)[0]  # the access line points at its trace


async def test_tracing_off_sends_no_trace_context(tiny: TinyUpstream, tmp_path: Path) -> None:
    servers = [{"name": "tiny", "transport": "streamable-http", "url": tiny.url}]
    async with running_gateway(gateway_config(servers, tmp_path)) as gw, aiohttp.ClientSession() as http:
        assert not gw.gateway.tracing.enabled
        body, headers = modern_request("tools/call", {"name": "tiny__probe", "arguments": {}})
        async with http.post(gw.url, json=body, headers={**headers, "traceparent": AGENT}) as resp:
            assert resp.status == 200
            assert resp.headers["x-request-id"] == AGENT_TRACE  # correlation does not need tracing
    (sent,) = tiny.received["tools/call"]
    assert "traceparent" not in sent.headers and "traceparent" not in sent.params["_meta"]
