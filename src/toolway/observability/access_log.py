"""The access log: one structured line per call and one per upstream call, from events.

`request_id` is the correlation id: the caller's `X-Request-Id`, else the trace id of its
`traceparent`, else minted (`toolway.protocol.layer.new_request_id`); the HTTP ingress
returns it as `x-request-id`. When the call is traced, `trace_id` joins the line to its trace.

Arguments and results are never logged, except for servers configured with
`log_payloads: true`, and then only after `redact`.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from toolway.observability.events import CallFinished, Events, UpstreamCallFinished
from toolway.observability.tracing import TRACE_ID_KEY

log = structlog.get_logger("toolway.access")

REDACTED = "[REDACTED]"
MAX_STRING = 2048  # longer strings are cut: a log line is not a place for whole documents
_MAX_DEPTH = 16
# Keys whose values are secrets, whatever they hold.
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|^pwd$|secret|token|authori[sz]ation|api[-_]?key|cookie|credential|private[-_]?key"
    r"|session[-_]?id",
    re.IGNORECASE,
)
# Secrets and personal data inside free text.
_SECRET_TEXT = re.compile(
    r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d.])"  # card and account numbers: 13-19 digits
    r"|\b\d{3}-\d{2}-\d{4}\b"  # US social security numbers
    r"|\bbearer\s+[\w.~+/=-]+"  # HTTP bearer credentials
    r"|\beyJ[\w-]+\.[\w-]+\.[\w-]*"  # JWTs
    r"|\b(?:sk|pk|rk)-[\w-]{16,}|\bgh[pousr]_\w{20,}|\bAKIA[0-9A-Z]{16}\b"  # common API key shapes
    r"|[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}",  # e-mail addresses
    re.IGNORECASE,
)
_LONG_NUMBER = 10**12  # an integer this large may be a card or account number


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON value fit for a log line: secret-named keys and secret-looking text replaced."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            value = f"{value[:MAX_STRING]}…({len(value) - MAX_STRING} more characters)"
        return _SECRET_TEXT.sub(REDACTED, value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return REDACTED if abs(value) >= _LONG_NUMBER else value
    if _depth >= _MAX_DEPTH:
        return "[…]"
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and _SECRET_KEY.search(key) else redact(item, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, _depth + 1) for item in value]
    return REDACTED  # not JSON: nothing to say about it safely


def install(events: Events) -> None:
    """Log every call and upstream call; calls to servers with `log_payloads: true` (the router marks
    them, from the server's current config, so servers registered at run time count too) also get
    their (redacted) payloads logged."""
    events.subscribe(CallFinished, _call)
    events.subscribe(UpstreamCallFinished, _upstream)


def _call(event: CallFinished) -> None:
    call = event.call
    upstream_ms = round(event.upstream_duration * 1000, 3) if event.upstream_duration is not None else None
    total_ms = round(event.duration * 1000, 3)
    fields: dict[str, Any] = {
        "request_id": call.request_id,
        "principal": call.principal,
        "era": call.era,
        "transport": call.transport,
        "method": call.method,
        "server": call.server,
        "target": call.target,
        "outcome": event.outcome,
        "error_code": event.error_code,
        "duration_ms": total_ms,
        "upstream_ms": upstream_ms,
        "gateway_ms": round(total_ms - upstream_ms, 3) if upstream_ms is not None else total_ms,
    }
    trace_id = call.annotations.get(TRACE_ID_KEY)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    if call.annotations.get("log_payloads"):
        fields["arguments"] = redact((call.params or {}).get("arguments"))
        if "result" in call.annotations:  # set by the router for these servers
            fields["result"] = redact(call.annotations["result"])
    log.info("call", **fields)


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
