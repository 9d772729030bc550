"""One structured log line per call: who, what, where it went, how it ended, how long."""

from __future__ import annotations

import time
from typing import Any

import structlog

from toolway.pipeline.context import Call, Handler
from toolway.protocol.errors import to_error

log = structlog.get_logger("toolway.access")


class RequestLog:
    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
        start = time.perf_counter()
        outcome, code = "ok", None
        try:
            result = await next_(call)
            if result.get("isError") is True:
                outcome = "tool_error"
            return result
        except Exception as exc:
            outcome, code = "error", to_error(exc).get("code")
            raise
        finally:
            log.info(
                "call",
                request_id=call.request_id,
                principal=call.principal,
                era=call.era,
                method=call.method,
                server=call.server,
                target=call.target,
                outcome=outcome,
                error_code=code,
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
            )
