"""The order of the filter chain, stated once."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from toolway.observability.events import Events
from toolway.pipeline.context import Call, Filter, Handler
from toolway.pipeline.observe import Observe


def compose(filters: Sequence[Filter], terminal: Handler) -> Handler:
    """Nest filters so the first one listed sees the call first and the result last."""
    handler = terminal
    for stage in reversed(filters):
        handler = partial(_stage, stage, handler)
    return handler


async def _stage(stage: Filter, next_: Handler, call: Call) -> dict:  # type: ignore[type-arg]
    return await stage(call, next_)


def build_chain(router: Handler, events: Events, policy: Filter | None = None) -> Handler:
    """The gateway's chain. Order matters:

    1. Observe first, so its event (the access log line, metrics, audit) covers
       every later stage, including calls that a later filter refuses.
    (Authentication, then authorization by scopes, slot in here: authentication first, so
    every later stage knows the caller.)
    2. Policy (`pipeline/policy.py`, when any policy is configured): after authorization, so
       a policy sees only calls the caller's scopes allow, with the caller's identity.
    (Rate limits and caching slot in after policy: authentication before rate limiting, so
    buckets are per principal.)
    3. The router last: it is the terminal stage that reaches the upstreams.
    """
    filters: list[Filter] = [Observe(events)]
    if policy is not None:
        filters.append(policy)
    return compose(filters, router)
