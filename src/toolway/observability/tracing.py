"""Tracing's front door. The OpenTelemetry SDK (in `otel`) is imported only when tracing is on,
so a gateway with `tracing.exporter: none` neither pays for spans nor holds the SDK in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolway.config.model import Tracing as TracingConfig
from toolway.observability.events import Events
from toolway.pipeline.context import Call, Handler

if TYPE_CHECKING:
    from toolway.observability.otel import UpstreamSpan

TRACE_KEY = "trace"  # Call.annotations: the call's RequestTrace (absent when untraced)
TRACE_ID_KEY = "trace_id"  # Call.annotations: its trace id in hex, for the access log


def upstream_span(call: Call, server: str) -> UpstreamSpan | None:
    """A child span for an upstream call on behalf of `call`; None when the call is not traced."""
    if TRACE_KEY not in call.annotations:
        return None
    from toolway.observability import otel

    return otel.upstream_span(call, server)


class Tracing:
    """The gateway's tracer provider and exporter, or nothing at all when tracing is off."""

    def __init__(self, config: TracingConfig) -> None:
        self.enabled = config.exporter != "none"
        self._impl: Any = None
        if self.enabled:
            from toolway.observability.otel import Tracing as OtelTracing

            self._impl = OtelTracing(config)

    def add_exporter(self, exporter: Any) -> None:
        """Also hand every finished span to `exporter`, synchronously (tests pass an in-memory one).

        Raises:
            RuntimeError: tracing is off.
        """
        if self._impl is None:
            raise RuntimeError("tracing is off (tracing.exporter: none)")
        self._impl.add_exporter(exporter)

    def install(self, events: Events) -> None:
        if self._impl is not None:
            self._impl.install(events)

    def wrap(self, handler: Handler) -> Handler:
        """`handler` inside a server span per call; `handler` itself when tracing is off."""
        if self._impl is None:
            return handler
        wrapped: Handler = self._impl.wrap(handler)
        return wrapped

    async def shutdown(self) -> None:
        if self._impl is not None:
            await self._impl.shutdown()
