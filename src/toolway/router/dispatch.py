"""Send one call to one replica of a server: the routing decisions, in the order they are taken.

1. Kill switch: a switched-off server or tool fails at once (`Killed`).
2. Affinity: a handshake-era session already pinned to a replica goes there, or is
   told its session is gone (`SessionGone`, HTTP 404) when that replica is.
3. Candidates: replicas connected, not draining, not ejected, breaker not open, not
   full for the caller's session group — preferring ones this call has not tried yet. When
   every one is full, the one with the fewest waiting calls, if its pool lets calls wait.
4. Version split (canary, blue/green) by the operator's weights, then the server's
   balancing strategy among that version's candidates.
5. The attempt on a session borrowed from the replica's pool (the caller's own under
   `sharing: per_principal`), within what is left of the call's deadline; its outcome
   feeds the replica's breaker and outlier tracker.
6. On failure, another attempt only where `RetryPolicy` says it is safe, after a
   jittered back-off, never past the attempt limit or the deadline.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from toolway.clock import Clock, MonotonicClock
from toolway.config.model import Timeouts
from toolway.observability.events import Events, RetryScheduled
from toolway.pipeline.context import Call
from toolway.protocol.errors import (
    CircuitOpen,
    NoHealthyReplica,
    SessionGone,
    UpstreamError,
    UpstreamRpcError,
)
from toolway.router import balance
from toolway.router.affinity import Affinity
from toolway.router.retry import RETRIED_KINDS, RetryPolicy
from toolway.router.traffic import Traffic
from toolway.sessions.pool import Replica, ServerPool
from toolway.sessions.upstream import State

# Failures that say something about the replica (breaker, outlier detection). A replica
# that is down or refuses connections is already out of rotation through its state.
_REPLICA_FAULTS = frozenset({"reset", "timeout", "protocol", "http_status"})
# A retry needs at least this share of the call's deadline left, or it could only time out
# (and count a failure against a healthy replica).
_MIN_ATTEMPT_SHARE = 0.05


class _Plan:
    """What the dispatcher precomputes for one pool: strategy, retry policy, hash key, versions."""

    def __init__(self, pool: ServerPool, rng: random.Random) -> None:
        config = pool.config
        self.pool = pool
        self.multi = len(pool.replicas) > 1
        self.pick = balance.STRATEGIES[config.balance.strategy]
        self.state = balance.State(rng, [r.id for r in pool.replicas])
        self.retry = RetryPolicy(config.retries, rng)
        kind, _, name = config.balance.hash_key.partition(":")
        self.key_kind, self.key_name = kind, name
        self.versions = tuple(r.version for r in pool.replicas)
        self.split = len(set(self.versions)) > 1
        # Each tool's deadlines merged over the server's once, not per call.
        self.timeouts = config.timeouts
        self.tool_timeouts = {
            tool: config.timeouts.model_copy(update=overrides.model_dump(exclude_none=True))
            for tool, overrides in config.tool_timeouts.items()
        }

    def limits(self, tool: str | None) -> Timeouts:
        """The deadlines of a call to `tool` (the server's, unless `tool_timeouts` names it)."""
        return self.tool_timeouts.get(tool, self.timeouts) if tool is not None else self.timeouts

    def key(self, call: Call, params: Mapping[str, Any] | None) -> str | None:
        """The consistent-hash key of this call, or None when it has none."""
        if self.key_kind == "principal":
            return call.principal or call.subscriber
        if self.key_kind == "header":
            value = call.headers.get(self.key_name) if call.headers is not None else None
            return value
        arguments = (params or {}).get("arguments")
        value = arguments.get(self.key_name) if isinstance(arguments, dict) else None
        return None if value is None else str(value)


class Dispatcher:
    """Routes calls to replicas. One per gateway; `traffic` and `affinity` are its run-time state."""

    def __init__(
        self,
        traffic: Traffic,
        affinity: Affinity,
        *,
        events: Events | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.traffic = traffic
        self.affinity = affinity
        self.rng = rng or random.Random()
        self._clock = clock or MonotonicClock()
        self._events = events
        self._plans: dict[str, _Plan] = {}

    def _plan(self, pool: ServerPool) -> _Plan:
        plan = self._plans.get(pool.name)
        if plan is None or plan.pool is not pool:  # new, or the server was registered again
            plan = self._plans[pool.name] = _Plan(pool, self.rng)
        return plan

    async def call(
        self,
        pool: ServerPool,
        call: Call,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        tool: str | None,
    ) -> dict[str, Any]:
        """Call one of the pool's replicas (retrying where safe) and return the result.

        Raises:
            Killed: the server or tool is switched off.
            SessionGone: the replica holding this session's state is gone.
            CircuitOpen, NoHealthyReplica: no replica can take the call.
            UpstreamError: the last attempt's failure, its `retryable` set for the client.
            UpstreamRpcError: the server answered with a JSON-RPC error.
        """
        self.traffic.check(pool.name, tool)
        plan = self._plan(pool)
        session = self._affinity_key(plan, call)
        if session is not None:
            pin = self.affinity.get(session, pool.name)
            if pin is not None:
                return await self._pinned(plan, call, params, headers, session, pin, plan.limits(tool))
        safe = plan.retry.safe(call.method, tool, pool.catalog)
        limits = plan.limits(tool)
        budget = limits.call
        started = self._clock.now()
        tried: set[str] = set()
        attempt = 0
        while True:
            attempt += 1
            replica = self._pick(plan, call, params, tried)
            if session is not None:
                self.affinity.pin(session, pool.name, replica.id, replica.epoch)
            try:
                left = budget - (self._clock.now() - started)
                return await self._attempt(replica, call, params, headers, left, limits)
            except UpstreamError as exc:
                exc.retryable = exc.retryable or (safe and exc.kind in RETRIED_KINDS)
                if not plan.retry.should_retry(exc, safe, attempt) or not self._worth_another(plan, replica, tried):
                    raise
                delay = plan.retry.backoff(attempt)
                if budget - (self._clock.now() - started) - delay < budget * _MIN_ATTEMPT_SHARE:
                    raise  # the per-call budget is spent
                if self._events is not None:
                    self._events.emit(
                        RetryScheduled(
                            pool.name, replica.id, call.method, call.target, call.request_id, attempt, exc.kind, delay
                        )
                    )
                tried.add(replica.id)
                if session is not None:
                    self.affinity.unpin(session, pool.name)  # the next pick pins the session again
                await self._clock.sleep(delay)

    @staticmethod
    def _worth_another(plan: _Plan, failed: Replica, tried: set[str]) -> bool:
        """Is there somewhere to try again? Another routable replica, or the same one still connected
        (a dead server fails fast: its calls do not wait out back-offs against it)."""
        if failed.conn.state is State.READY:
            return True
        return any(r.routable() and r.id != failed.id and r.id not in tried for r in plan.pool.replicas)

    async def _attempt(
        self,
        replica: Replica,
        call: Call,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        timeout: float,  # noqa: ASYNC109 - what is left of the call's deadline
        limits: Timeouts,
    ) -> dict[str, Any]:
        breaker = replica.breaker
        if not breaker.allow():
            raise CircuitOpen(replica.conn.name, f"replica {replica.id}'s circuit breaker is open")
        try:
            result = await replica.call(
                replica.key(call.identity),
                call.method,
                params,
                client_capabilities=call.client_capabilities,
                client_info=call.client_info,
                headers=headers,
                sink=call.sink,
                log_level=call.log_level,
                timeout=timeout,
                limits=limits,
            )
        except UpstreamError as exc:
            if exc.kind in _REPLICA_FAULTS:
                breaker.failure()
                replica.outlier.record(False)
            else:
                breaker.release()
            raise
        except UpstreamRpcError:
            breaker.success()  # the server answered: an error of the request, not of the replica
            replica.outlier.record(True)
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.success()
        replica.outlier.record(True)
        return result

    def _pick(self, plan: _Plan, call: Call, params: dict[str, Any] | None, tried: set[str]) -> Replica:
        pool = plan.pool
        if not plan.multi:
            # One replica: nothing to choose. Its connection raises its own clear error when it
            # is down, and waits for a first connect that is still under way.
            only = pool.replicas[0]
            if only.draining or (only.full(only.key(call.identity)) and not only.sessions.may_wait()):
                raise NoHealthyReplica(pool.name, f"its only replica is {only.health()}")
            if only.conn.state is State.READY and not only.breaker.available():
                raise CircuitOpen(pool.name, "its circuit breaker is open; calls resume after a trial succeeds")
            return only
        candidates = [r for r in pool.replicas if r.routable(r.key(call.identity))]
        fresh = [r for r in candidates if r.id not in tried] or candidates
        if not fresh:
            waitable = [r for r in pool.replicas if r.available() and r.sessions.may_wait()]
            if waitable:  # every one is full: queue where the fewest already wait
                return min(waitable, key=lambda r: r.sessions.waiting)
            connecting = [r for r in pool.replicas if r.conn.state is State.CONNECTING and not r.draining]
            if connecting and not tried:
                return connecting[0]  # start-up: its call waits (bounded) for the first connect
            raise self._none_left(pool)
        if plan.split:
            version = self.traffic.choose_version(pool.name, plan.versions, {r.version for r in fresh}, self.rng)
            if version is not None:
                fresh = [r for r in fresh if r.version == version]
        chosen: Replica = plan.pick(fresh, plan.state, plan.key(call, params))
        return chosen

    def _none_left(self, pool: ServerPool) -> UpstreamError:
        ready = [r for r in pool.replicas if r.conn.state is State.READY and not r.draining]
        if ready and all(not r.breaker.available() for r in ready):
            return CircuitOpen(pool.name, "every connected replica's circuit breaker is open")
        states = "; ".join(
            f"{r.id}: {r.health()}" + (f" ({r.conn.last_error})" if r.conn.last_error else "") for r in pool.replicas
        )
        return NoHealthyReplica(pool.name, f"no healthy replica ({states})")

    def _affinity_key(self, plan: _Plan, call: Call) -> str | None:
        """The downstream session to pin, when this server's replicas hold per-session state."""
        if not plan.multi or call.era != "handshake" or call.subscriber is None:
            return None
        negotiated = plan.pool.negotiated
        stateful = negotiated is not None and negotiated.era == "handshake"
        return call.subscriber if stateful or plan.pool.config.affinity else None

    async def _pinned(
        self,
        plan: _Plan,
        call: Call,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        session: str,
        pin: tuple[str, int],
        limits: Timeouts,
    ) -> dict[str, Any]:
        pool = plan.pool
        replica = pool.replica(pin[0])
        if replica is None or replica.conn.state is not State.READY or replica.epoch != pin[1]:
            raise self._gone(pool, session, pin[0])
        try:
            return await self._attempt(replica, call, params, headers, limits.call, limits)
        except UpstreamError as exc:
            if replica.conn.state is not State.READY or replica.epoch != pin[1]:
                raise self._gone(pool, session, pin[0]) from exc
            raise

    def _gone(self, pool: ServerPool, session: str, replica_id: str) -> SessionGone:
        self.affinity.unpin(session, pool.name)
        return SessionGone(
            f"Session not found: replica {replica_id} of server {pool.name!r}, which held this session's state,"
            " is gone; start a new session",
            data={"server": pool.name, "cause": "affinity_lost", "retryable": True},
        )

    def forget_session(self, session: str) -> None:
        """A downstream session ended: drop its pins."""
        self.affinity.forget(session)

    def snapshot(self, pools: Mapping[str, ServerPool]) -> dict[str, Any]:
        """Traffic state and every replica's health, for `GET /admin/traffic`."""
        servers = {}
        for name, pool in pools.items():
            versions = [r.version for r in pool.replicas]
            servers[name] = {
                "strategy": pool.config.balance.strategy,
                "shares": self.traffic.shares(name, versions),
                "killed": name in self.traffic.killed_servers,
                "replicas": [r.describe() for r in pool.replicas],
            }
        return {**self.traffic.snapshot(), "servers": servers, "pinned_sessions": len(self.affinity)}
