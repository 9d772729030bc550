"""The first stage of the chain: time every call and tell the observers how it ended."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from toolway.observability.events import CallFinished, Events
from toolway.pipeline.context import Call, Handler
from toolway.protocol.errors import to_error


class Observe:
    def __init__(self, events: Events) -> None:
        self._events = events

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
        start = time.perf_counter()
        outcome, code = "ok", None
        try:
            result = await next_(call)
            if result.get("isError") is True:
                outcome = "tool_error"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"  # the client cancelled or went away (stateless era)
            raise
        except Exception as exc:
            outcome, code = "error", to_error(exc).get("code")
            raise
        finally:
            upstream = call.annotations.get("upstream_seconds")
            self._events.emit(CallFinished(call, outcome, code, time.perf_counter() - start, upstream))
