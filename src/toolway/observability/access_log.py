"""The access log: one structured line per call and one per upstream call, from events."""

from __future__ import annotations

import structlog

from toolway.observability.events import CallFinished, Events, UpstreamCallFinished

log = structlog.get_logger("toolway.access")


def install(events: Events) -> None:
    events.subscribe(CallFinished, _call)
    events.subscribe(UpstreamCallFinished, _upstream)


def _call(event: CallFinished) -> None:
    call = event.call
    upstream_ms = round(event.upstream_duration * 1000, 3) if event.upstream_duration is not None else None
    total_ms = round(event.duration * 1000, 3)
    log.info(
        "call",
        request_id=call.request_id,
        principal=call.principal,
        era=call.era,
        transport=call.transport,
        method=call.method,
        server=call.server,
        target=call.target,
        outcome=event.outcome,
        error_code=event.error_code,
        duration_ms=total_ms,
        upstream_ms=upstream_ms,
        gateway_ms=round(total_ms - upstream_ms, 3) if upstream_ms is not None else total_ms,
    )


def _upstream(event: UpstreamCallFinished) -> None:
    log.info(
        "upstream call",
        request_id=event.request_id,
        server=event.server,
        method=event.method,
        target=event.target,
        outcome=event.outcome,
        error_code=event.error_code,
        duration_ms=round(event.duration * 1000, 3),
    )
