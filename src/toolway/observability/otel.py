"""OpenTelemetry traces: a server span per client request, a client span per upstream call.

Off by default (`tracing.exporter: none`): then there is no tracer provider, the chain
is not wrapped and no call carries a span; the router's only cost is one `dict.get`
that finds nothing. No spans, not no-op spans (a span costs ~37 µs here).

On, `Tracing.wrap` puts one server span around the whole chain: it covers every filter,
with no child span per filter yet. It continues the caller's trace when the request
carried a W3C `traceparent` (the HTTP header, or `params._meta.traceparent` on any
transport). The router asks `upstream_span` for a child span per upstream call and puts
that span's `traceparent` (and `tracestate`) into the request's HTTP headers and its
`params._meta`, so HTTP and stdio servers alike can continue the trace. How a call
ended reaches its span from the `CallFinished` event, like every other observer.

Spans are exported from a background thread (`BatchSpanProcessor`); the console exporter
writes to stderr, because `toolway stdio` speaks MCP on stdout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from toolway import __version__
from toolway.config.model import Tracing as TracingConfig
from toolway.observability.events import CallFinished, Events
from toolway.observability.tracing import TRACE_ID_KEY, TRACE_KEY
from toolway.pipeline.context import Call, Handler

_W3C_KEYS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


class RequestTrace:
    """The span of one client request, carried by its Call."""

    __slots__ = ("span", "tracer")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self.tracer = tracer
        self.span = span


class UpstreamSpan:
    """A client span for one upstream call, and the W3C headers that continue it."""

    __slots__ = ("carrier", "span")

    def __init__(self, trace: RequestTrace, server: str, call: Call) -> None:
        name = f"{call.method} {call.target}" if call.target else call.method
        attributes = {"mcp.method.name": call.method, "toolway.server": server}
        if call.target:
            attributes["toolway.target"] = call.target
        self.span = trace.tracer.start_span(
            name, context=set_span_in_context(trace.span), kind=SpanKind.CLIENT, attributes=attributes
        )
        self.carrier: dict[str, str] = {}
        _PROPAGATOR.inject(self.carrier, context=set_span_in_context(self.span))

    def inject(
        self, params: dict[str, Any] | None, headers: dict[str, str] | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Copies of the request's params and HTTP headers that carry this span's trace context."""
        meta = (params or {}).get("_meta")
        params = {**(params or {}), "_meta": {**(meta if isinstance(meta, dict) else {}), **self.carrier}}
        return params, {**(headers or {}), **self.carrier}

    def end(self, outcome: str, error_code: int | None) -> None:
        if error_code is not None:
            self.span.set_attribute("rpc.jsonrpc.error_code", error_code)
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.set_attribute("toolway.outcome", outcome)
        self.span.end()


def upstream_span(call: Call, server: str) -> UpstreamSpan | None:
    """A child span for an upstream call on behalf of `call`; None when the call is not traced."""
    trace = call.annotations.get(TRACE_KEY)
    return UpstreamSpan(trace, server, call) if isinstance(trace, RequestTrace) else None


class Tracing:
    """The gateway's tracer provider and exporter, or nothing at all when tracing is off."""

    def __init__(self, config: TracingConfig) -> None:
        self.enabled = config.exporter != "none"
        self._provider: TracerProvider | None = None
        if not self.enabled:
            return
        self._provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({SERVICE_NAME: config.service_name}),
            shutdown_on_exit=False,  # the gateway shuts it down, flushing, in its own shutdown
        )
        self._provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
        self._tracer = self._provider.get_tracer("toolway", __version__)

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Also hand every finished span to `exporter`, synchronously (tests pass an in-memory one).

        Raises:
            RuntimeError: tracing is off.
        """
        if self._provider is None:
            raise RuntimeError("tracing is off (tracing.exporter: none)")
        self._provider.add_span_processor(SimpleSpanProcessor(exporter))

    def install(self, events: Events) -> None:
        if self.enabled:
            events.subscribe(CallFinished, _finished)

    def wrap(self, handler: Handler) -> Handler:
        """`handler` inside a server span per call; `handler` itself when tracing is off."""
        if not self.enabled:
            return handler
        tracer = self._tracer

        async def traced(call: Call) -> dict[str, Any]:
            attributes = {
                "mcp.method.name": call.method,
                "mcp.protocol.version": call.protocol_version,
                "toolway.era": call.era,
                "toolway.transport": call.transport,
                "toolway.request_id": call.request_id,
            }
            span = tracer.start_span(call.method, context=_incoming(call), kind=SpanKind.SERVER, attributes=attributes)
            call.annotations[TRACE_KEY] = RequestTrace(tracer, span)
            call.annotations[TRACE_ID_KEY] = format(span.get_span_context().trace_id, "032x")
            try:
                return await handler(call)
            finally:
                span.end()

        return traced

    async def shutdown(self) -> None:
        """Export what is buffered and stop (in a thread: exporters block)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.exporter == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    # Imported only when chosen: it brings in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers) or None)


def _incoming(call: Call) -> Context | None:
    """The caller's trace context: the `traceparent` header, else `params._meta`."""
    carrier: Mapping[str, Any] | None = None
    if call.traceparent is not None:
        carrier = {"traceparent": call.traceparent}
    else:
        meta = (call.params or {}).get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("traceparent"), str):
            carrier = {key: meta[key] for key in _W3C_KEYS if isinstance(meta.get(key), str)}
    return _PROPAGATOR.extract(carrier) if carrier is not None else None


def _finished(event: CallFinished) -> None:
    call = event.call
    trace = call.annotations.get(TRACE_KEY)
    if not isinstance(trace, RequestTrace) or not trace.span.is_recording():
        return
    span = trace.span
    if call.server is not None:
        span.set_attribute("toolway.server", call.server)
        if call.target:
            # Only targets that reached a server: unknown names stay out of span names.
            span.update_name(f"{call.method} {call.target}")
            span.set_attribute("toolway.target", call.target)
    span.set_attribute("toolway.outcome", event.outcome)
    if event.upstream_duration is not None:
        span.set_attribute("toolway.upstream_ms", round(event.upstream_duration * 1000, 3))
    if event.error_code is not None:
        span.set_attribute("rpc.jsonrpc.error_code", event.error_code)
        span.set_status(Status(StatusCode.ERROR))
    elif event.outcome == "tool_error":
        span.set_attribute("error.type", "tool_error")
