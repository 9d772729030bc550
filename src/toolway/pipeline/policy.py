"""The policy stage: evaluate the configured policies on calls that reach a tool, prompt or resource.

Only `tools/call`, `prompts/get` and `resources/read` are evaluated: they are what a policy
guards. Lists are not filtered here, because a policy may depend on arguments and the time
of the call, which a list has neither of; what a caller may see is the authorization
(scopes) stage's job. An enforced denial raises `PolicyDenied` (the first one, in config
order); shadow decisions are logged exactly the same way and never applied.
"""

from __future__ import annotations

from typing import Any

from toolway.observability.events import Events
from toolway.pipeline.context import Call, Handler
from toolway.policy.decision_log import PolicyDecided
from toolway.policy.document import OwnerOf, call_document
from toolway.policy.engine import PolicyEngine
from toolway.protocol.errors import PolicyDenied

GUARDED = frozenset({"tools/call", "prompts/get", "resources/read"})


class PolicyFilter:
    def __init__(self, engine: PolicyEngine, events: Events, owner_of: OwnerOf) -> None:
        self._engine = engine
        self._events = events
        self._owner_of = owner_of

    async def __call__(self, call: Call, next_: Handler) -> dict[str, Any]:
        if call.method not in GUARDED:
            return await next_(call)
        document = call_document(call, self._engine.time_now(), self._owner_of)
        decisions = tuple(self._engine.decide(document))
        self._events.emit(PolicyDecided(call, document, decisions))
        for decision in decisions:
            if decision.applied and not decision.allow:
                call.annotations["policy"] = decision.policy
                raise PolicyDenied(decision.policy, decision.reason or "denied")
        return await next_(call)
