"""Prometheus metrics, from events, in a registry of the gateway's own.

Counters and histograms listen to `CallFinished` and `UpstreamCallFinished`; the
gauges (in-flight calls, sessions, connections, parked calls, upstream states,
catalog sizes) are read from the components when `/metrics` is scraped, so the
hot path does nothing for them.

Label values are bounded, because every new value is a new series kept forever:
`server` is a configured server or "other", `tool` a tool in some server's catalog
or "other", `method` an MCP method or "other". Calls that belong to no server (a
merged `tools/list`, `ping`) have `server=""`; calls other than `tools/call` have
`tool=""`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from toolway.observability import routing_metrics
from toolway.observability.events import CallFinished, Events, UpstreamCallFinished
from toolway.pipeline.context import Call
from toolway.protocol.mrtr import Parking
from toolway.registry.catalog import LISTS
from toolway.router.names import qualify, split
from toolway.sessions.downstream import SessionTable
from toolway.sessions.hub import Hub
from toolway.sessions.manager import ConnectionManager
from toolway.sessions.upstream import State

OTHER = "other"
NONE = ""
# Client-to-server requests of either era; anything else a client sends is counted as "other".
METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "subscriptions/listen",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
    }
)
# Methods whose namespaced name says which server they were meant for, even when it was unknown.
_NAMED = frozenset({"tools/call", "prompts/get"})
# Tool calls run from milliseconds to the 30 s default deadline (and past it when configured).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Series per metric before new tool names fold into "other" even when they are in a catalog.
MAX_SERIES = 10_000
_KINDS = {method: key for method, (_, key) in LISTS.items()}  # catalog list -> kind label


class Labels:
    """Bounded label values for a finished call, read against the current catalogs."""

    def __init__(self, manager: ConnectionManager) -> None:
        self._manager = manager
        self._generation = -1
        self._tools: frozenset[str] = frozenset()

    def server(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self._manager.connections else OTHER

    def tool(self, qualified: str | None) -> str:
        generation = self._manager.generation
        if generation != self._generation:  # A server connected, went away or changed its catalog.
            self._tools = frozenset(
                qualify(name, tool["name"])
                for name, conn in self._manager.connections.items()
                for tool in conn.catalog.get("tools/list")
            )
            self._generation = generation
        return qualified if qualified in self._tools else OTHER

    def of_call(self, call: Call) -> tuple[str, str]:
        """(server, tool): the tool is `<server>__<name>` on every endpoint, and "" unless `tools/call`."""
        server = call.server or call.scope
        target = call.target
        if call.scope is not None and target is not None and call.method in _NAMED:
            target = qualify(call.scope, target)  # /servers/<name>/mcp uses names unchanged
        if server is None and call.method in _NAMED:
            parts = split(target) if target is not None else None
            server = parts[0] if parts is not None else OTHER
        tool = self.tool(target) if call.method == "tools/call" else NONE
        return self.server(server), tool


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


class _Ingress(Protocol):
    @property
    def legacy(self) -> Sized: ...

    @property
    def websocket(self) -> _WebSockets: ...


class _WebSockets(Protocol):
    @property
    def open_connections(self) -> int: ...


class Sources(Protocol):
    """What the gauges read at scrape time (the `Gateway` is one)."""

    @property
    def events(self) -> Events: ...

    @property
    def manager(self) -> ConnectionManager: ...

    @property
    def sessions(self) -> SessionTable: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def parking(self) -> Parking: ...

    @property
    def app(self) -> _Ingress: ...


_CallChildren = tuple[Counter, Histogram]
_UpstreamChildren = tuple[Counter, Histogram]


class Metrics:
    """The gateway's metrics. Build with `install`; `exposition` renders a scrape."""

    def __init__(self, sources: Sources, *, max_series: int = MAX_SERIES) -> None:
        # A registry per gateway, not the process-global one: several gateways in one
        # process (tests, embedding) must not share or collide on series.
        self.registry = CollectorRegistry()
        self.labels = Labels(sources.manager)
        self._max_series = max_series
        self._requests = Counter(
            "toolway_requests",
            "Client requests by how they ended (ok, tool_error, error).",
            ["server", "tool", "method", "era", "transport", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "toolway_request_duration_seconds",
            "Time in the gateway per client request, upstream included.",
            ["server", "method", "era"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._upstream_requests = Counter(
            "toolway_upstream_requests",
            "Requests sent to upstream servers on a client's behalf, by outcome (ok, error).",
            ["server", "method", "outcome"],
            registry=self.registry,
        )
        self._upstream_duration = Histogram(
            "toolway_upstream_duration_seconds",
            "Time waiting on an upstream server per request.",
            ["server", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(sources))
        # Pre-bound children per label tuple: `.labels()` per call costs twice as much (FIELD-NOTES).
        self._calls: dict[tuple[str, ...], _CallChildren] = {}
        self._upstream: dict[tuple[str, ...], _UpstreamChildren] = {}

    def on_call(self, event: CallFinished) -> None:
        call = event.call
        server, tool = self.labels.of_call(call)
        key = (server, tool, method_label(call.method), call.era, call.transport, event.outcome)
        children = self._calls.get(key)
        if children is None:
            children = self._bind_call(key)
        children[0].inc()
        children[1].observe(event.duration)

    def on_upstream(self, event: UpstreamCallFinished) -> None:
        key = (self.labels.server(event.server), method_label(event.method), event.outcome)
        children = self._upstream.get(key)
        if children is None:
            server, method, outcome = key
            children = (
                self._upstream_requests.labels(server, method, outcome),
                self._upstream_duration.labels(server, method),
            )
            self._upstream[key] = children
        children[0].inc()
        children[1].observe(event.duration)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type (OpenMetrics when the scraper asks for it)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def _bind_call(self, key: tuple[str, ...]) -> _CallChildren:
        server, tool, method, era, transport, outcome = key
        if len(self._calls) >= self._max_series and tool not in (NONE, OTHER):
            # Past the bound, a catalog that keeps growing cannot add series: the rest is "other".
            key = (server, OTHER, method, era, transport, outcome)
            tool = OTHER
            if key in self._calls:
                return self._calls[key]
        children = (
            self._requests.labels(server, tool, method, era, transport, outcome),
            self._duration.labels(server, method, era),
        )
        self._calls[key] = children
        return children


class _StateCollector:
    """Gauges computed at scrape time from the components themselves."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        src = self._sources
        connections = src.manager.connections
        inflight = GaugeMetricFamily(
            "toolway_upstream_inflight", "Requests sent to each server and not yet answered.", labels=["server"]
        )
        state = GaugeMetricFamily(
            "toolway_upstream_state", "1 for each server's current connection state.", labels=["server", "state"]
        )
        catalog = GaugeMetricFamily(
            "toolway_catalog_items", "Items in each server's catalog, by kind.", labels=["server", "kind"]
        )
        for name, conn in connections.items():
            inflight.add_metric([name], conn.inflight)
            for option in State:
                state.add_metric([name, option.value], 1.0 if conn.state is option else 0.0)
            for method, kind in _KINDS.items():
                catalog.add_metric([name, kind], len(conn.catalog.get(method)))
        yield from (inflight, state, catalog)

        # Handshake-era sessions are records; the stateless era has none, so what it keeps
        # open are `subscriptions/listen` streams: every hub listener that is not a session.
        handshake = src.sessions.all()
        listening = sum(1 for session in handshake if src.hub.get(session.id) is not None)
        sessions = GaugeMetricFamily(
            "toolway_sessions",
            "Handshake-era sessions (era=handshake) and stateless-era listen streams (era=modern).",
            labels=["era"],
        )
        sessions.add_metric(["handshake"], len(handshake))
        sessions.add_metric(["modern"], max(0, len(src.hub) - listening))
        yield sessions

        open_connections = GaugeMetricFamily(
            "toolway_connections", "Open long-lived client connections by transport.", labels=["transport"]
        )
        open_connections.add_metric(["sse"], len(src.app.legacy))
        open_connections.add_metric(["websocket"], src.app.websocket.open_connections)
        yield open_connections
        yield GaugeMetricFamily(
            "toolway_parked_calls",
            "Calls parked for a stateless-era client's input_required retry.",
            value=len(src.parking),
        )


def install(sources: Sources, *, max_series: int = MAX_SERIES) -> Metrics:
    """Create the gateway's metrics and subscribe them to its events."""
    metrics = Metrics(sources, max_series=max_series)
    sources.events.subscribe(CallFinished, metrics.on_call)
    sources.events.subscribe(UpstreamCallFinished, metrics.on_upstream)
    routing_metrics.install(metrics.registry, sources.manager, sources.events)  # replicas, breakers, retries
    return metrics
