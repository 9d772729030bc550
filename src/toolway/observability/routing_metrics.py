"""Prometheus metrics of routing: retries, breaker transitions, ejections, traffic changes, pool
sessions closed and waits, and each replica's health and calls in flight and each server's open
upstream sessions and waiting calls (read at scrape time).

Labels are bounded like the rest of the gateway's metrics: `server` is a configured
server or "other", `replica` one of its configured replica ids or "other", `cause`
and `state` come from fixed sets.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from toolway.observability.events import (
    BreakerChanged,
    Events,
    PoolWaited,
    ReplicaEjected,
    RetryScheduled,
    TrafficChanged,
    UpstreamSessionClosed,
)
from toolway.router.retry import RETRIED_KINDS
from toolway.sessions.manager import ConnectionManager

OTHER = "other"
HEALTH = ("connecting", "down", "draining", "ejected", "open", "half_open", "full", "healthy")
BREAKER_STATES = frozenset({"closed", "open", "half_open"})
TRAFFIC_ACTIONS = frozenset({"kill", "revive", "weights", "drain", "undrain"})
CLOSE_REASONS = frozenset({"idle", "evicted", "lost", "dial_failed", "closed"})
WAIT_OUTCOMES = frozenset({"granted", "timeout", "cancelled"})


class RoutingMetrics:
    def __init__(self, registry: CollectorRegistry, manager: ConnectionManager) -> None:
        self._manager = manager
        self._retries = Counter(
            "toolway_retries",
            "Calls tried again after a failure, by its cause.",
            ["server", "cause"],
            registry=registry,
        )
        self._breaker = Counter(
            "toolway_breaker_transitions",
            "Circuit breaker moves, by the state entered.",
            ["server", "replica", "state"],
            registry=registry,
        )
        self._ejections = Counter(
            "toolway_ejections", "Replicas ejected by outlier detection.", ["server", "replica"], registry=registry
        )
        self._traffic = Counter(
            "toolway_traffic_changes", "Operator traffic changes, by action.", ["action"], registry=registry
        )
        self._closed = Counter(
            "toolway_upstream_sessions_closed",
            "Pool sessions closed, by reason.",
            ["server", "reason"],
            registry=registry,
        )
        self._waits = Counter(
            "toolway_pool_waits",
            "Calls that waited for a pool slot, by outcome.",
            ["server", "outcome"],
            registry=registry,
        )
        registry.register(_ReplicaCollector(manager))

    def _names(self, server: str, replica: str) -> tuple[str, str]:
        pool = self._manager.get(server)
        if pool is None:
            return OTHER, OTHER
        return server, replica if pool.replica(replica) is not None else OTHER

    def on_retry(self, event: RetryScheduled) -> None:
        server, _ = self._names(event.server, event.replica)
        self._retries.labels(server, event.cause if event.cause in RETRIED_KINDS else OTHER).inc()

    def on_breaker(self, event: BreakerChanged) -> None:
        state = event.new if event.new in BREAKER_STATES else OTHER
        self._breaker.labels(*self._names(event.server, event.replica), state).inc()

    def on_ejection(self, event: ReplicaEjected) -> None:
        self._ejections.labels(*self._names(event.server, event.replica)).inc()

    def on_traffic(self, event: TrafficChanged) -> None:
        self._traffic.labels(event.action if event.action in TRAFFIC_ACTIONS else OTHER).inc()

    def on_session_closed(self, event: UpstreamSessionClosed) -> None:
        server, _ = self._names(event.server, event.replica)
        self._closed.labels(server, event.reason if event.reason in CLOSE_REASONS else OTHER).inc()

    def on_waited(self, event: PoolWaited) -> None:
        server, _ = self._names(event.server, event.replica)
        self._waits.labels(server, event.outcome if event.outcome in WAIT_OUTCOMES else OTHER).inc()


class _ReplicaCollector:
    def __init__(self, manager: ConnectionManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        health = GaugeMetricFamily(
            "toolway_replica_health", "1 for each replica's current health.", labels=["server", "replica", "health"]
        )
        inflight = GaugeMetricFamily(
            "toolway_replica_inflight", "Calls in flight on each replica.", labels=["server", "replica"]
        )
        sessions = GaugeMetricFamily(
            "toolway_upstream_sessions",
            "Upstream sessions open per server (gateway's own included).",
            labels=["server"],
        )
        waiting = GaugeMetricFamily(
            "toolway_pool_waiting", "Calls waiting for a pool slot per server.", labels=["server"]
        )
        for name, pool in self._manager.pools.items():
            for replica in pool.replicas:
                now = replica.health()
                for option in HEALTH:
                    health.add_metric([name, replica.id, option], 1.0 if now == option else 0.0)
                inflight.add_metric([name, replica.id], replica.inflight)
            sessions.add_metric([name], sum(r.sessions.open_count() for r in pool.replicas))
            waiting.add_metric([name], sum(r.sessions.waiting for r in pool.replicas))
        yield from (health, inflight, sessions, waiting)


def install(registry: CollectorRegistry, manager: ConnectionManager, events: Events) -> RoutingMetrics:
    """Register the routing metrics in `registry` and subscribe them to `events`."""
    metrics = RoutingMetrics(registry, manager)
    events.subscribe(RetryScheduled, metrics.on_retry)
    events.subscribe(BreakerChanged, metrics.on_breaker)
    events.subscribe(ReplicaEjected, metrics.on_ejection)
    events.subscribe(TrafficChanged, metrics.on_traffic)
    events.subscribe(UpstreamSessionClosed, metrics.on_session_closed)
    events.subscribe(PoolWaited, metrics.on_waited)
    return metrics
