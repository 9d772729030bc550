"""Traces: a server span per request, a client span per upstream call, W3C context in and out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from toolway.config.model import Tracing as TracingConfig
from toolway.observability.events import CallFinished, Events
from toolway.observability.tracing import TRACE_ID_KEY, TRACE_KEY, Tracing, upstream_span
from toolway.pipeline.context import Call

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _call(**overrides: Any) -> Call:
    fields: dict[str, Any] = {
        "method": "tools/call",
        "params": {"name": "alpha__echo", "arguments": {"text": "hi"}},
        "era": "modern",
        "protocol_version": "2026-07-28",
        "client_capabilities": {},
        "client_info": None,
        "request_id": "r1",
        **overrides,
    }
    return Call(**fields)


def _sampled(traceparent: str) -> bool:
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 0x01)  # the other bits are trace-context level 2


class Upstream:
    """A terminal handler that calls 'upstream' the way the router does, and keeps what it sent."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.sent: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def __call__(self, call: Call) -> dict[str, Any]:
        call.server, call.target = "alpha", "alpha__echo"
        span = upstream_span(call, "alpha")
        assert span is not None
        params = {"name": "echo", "arguments": {"text": "hi"}, "_meta": {"progressToken": 7}}
        self.sent.append(span.inject(params, {"Mcp-Name": "echo"}))
        span.end("ok", None)
        result = {"content": [{"type": "text", "text": "hi"}]}
        self.events.emit(CallFinished(call, "ok", None, 0.002, 0.001))
        return result


@pytest.fixture
async def traced() -> AsyncIterator[tuple[Tracing, InMemorySpanExporter, Events]]:
    tracing = Tracing(TracingConfig(exporter="console"))
    spans = InMemorySpanExporter()
    tracing.add_exporter(spans)
    events = Events()
    tracing.install(events)
    yield tracing, spans, events
    await tracing.shutdown()


async def test_request_span_is_parent_of_upstream_span_and_context_is_injected(
    traced: tuple[Tracing, InMemorySpanExporter, Events],
) -> None:
    tracing, spans, events = traced
    upstream = Upstream(events)
    call = _call()
    await tracing.wrap(upstream)(call)
    client, server = spans.get_finished_spans()
    assert server.kind is SpanKind.SERVER and client.kind is SpanKind.CLIENT
    assert server.name == "tools/call alpha__echo" and client.name == "tools/call alpha__echo"
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert server.parent is None  # no caller context: a new trace
    assert server.attributes is not None and server.attributes["toolway.outcome"] == "ok"
    assert call.annotations[TRACE_ID_KEY] == format(server.context.trace_id, "032x")

    params, headers = upstream.sent[0]
    expected = f"00-{client.context.trace_id:032x}-{client.context.span_id:016x}-"
    assert headers["traceparent"].startswith(expected) and params["_meta"]["traceparent"] == headers["traceparent"]
    assert _sampled(headers["traceparent"])
    assert params["_meta"]["progressToken"] == 7 and headers["Mcp-Name"] == "echo"  # nothing else lost


async def test_caller_traceparent_header_is_continued(traced: tuple[Tracing, InMemorySpanExporter, Events]) -> None:
    tracing, spans, events = traced
    await tracing.wrap(Upstream(events))(_call(traceparent=CALLER))
    _, server = spans.get_finished_spans()
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN


async def test_caller_traceparent_in_meta_is_continued(traced: tuple[Tracing, InMemorySpanExporter, Events]) -> None:
    tracing, spans, events = traced
    params = {"name": "alpha__echo", "arguments": {}, "_meta": {"traceparent": CALLER}}
    await tracing.wrap(Upstream(events))(_call(params=params))
    _, server = spans.get_finished_spans()
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE


async def test_errors_mark_the_span(traced: tuple[Tracing, InMemorySpanExporter, Events]) -> None:
    tracing, spans, events = traced

    async def refuse(call: Call) -> dict[str, Any]:
        events.emit(CallFinished(call, "error", -32602, 0.001, None))
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await tracing.wrap(refuse)(_call())
    (server,) = spans.get_finished_spans()
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None and server.attributes["rpc.jsonrpc.error_code"] == -32602
    assert server.name == "tools/call"  # the unknown target never reached a server: not in the name


async def test_unsampled_traces_record_nothing_but_still_propagate() -> None:
    tracing = Tracing(TracingConfig(exporter="console", sample_ratio=0.0))
    spans = InMemorySpanExporter()
    tracing.add_exporter(spans)
    upstream = Upstream(Events())
    await tracing.wrap(upstream)(_call())
    await tracing.shutdown()
    assert spans.get_finished_spans() == ()
    _, headers = upstream.sent[0]
    assert not _sampled(headers["traceparent"])  # not sampled, and said so downstream


async def test_tracing_off_creates_nothing() -> None:
    tracing = Tracing(TracingConfig())
    assert not tracing.enabled

    async def handler(call: Call) -> dict[str, Any]:
        return {}

    assert tracing.wrap(handler) is handler  # not even a wrapper per call
    call = _call()
    assert upstream_span(call, "alpha") is None
    assert TRACE_KEY not in call.annotations
    with pytest.raises(RuntimeError):
        tracing.add_exporter(InMemorySpanExporter())
    await tracing.shutdown()
