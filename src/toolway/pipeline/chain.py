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


def build_chain(
    router: Handler, events: Events, *, authorize: Filter | None = None, policy: Filter | None = None
) -> Handler:
    """The gateway's chain. Order matters:

    1. Observe first, so its event (the access log line, metrics, audit) covers
       every later stage, including calls that a later filter refuses.
    (Authentication runs in the ingress, before any session lookup, because a failure
    must be an HTTP 401; every call reaches the chain with its identity already set.)
    2. Authorize (when authentication is on): after Observe, so refused calls are logged
       and audited under the caller's name; before policy, rate limits and caching (which
       slot in after it as they arrive), so nothing is spent on a call that is not allowed.
    3. Policy (`pipeline/policy.py`, when any policy is not `off`): after authorization, so a
       policy sees only calls the caller's scopes allow, with the caller's identity.
    4. The router last: it is the terminal stage that reaches the upstreams.
    """
    filters: list[Filter] = [Observe(events)]
    if authorize is not None:
        filters.append(authorize)
    if policy is not None:
        filters.append(policy)
    return compose(filters, router)
