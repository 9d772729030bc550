"""Bounded metric labels, pre-bound children and the scrape-time gauges, without a network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from toolway.observability.events import CallFinished, Events, UpstreamCallFinished
from toolway.observability.metrics import Labels, install
from toolway.pipeline.context import Call
from toolway.registry.catalog import EMPTY, ServerCatalog
from toolway.sessions.downstream import SessionTable
from toolway.sessions.hub import Hub
from toolway.sessions.upstream import State


def catalog(*tools: str) -> ServerCatalog:
    return ServerCatalog(items={"tools/list": tuple({"name": t} for t in tools), "prompts/list": ({"name": "p"},)})


@dataclass
class FakeConnection:
    catalog: ServerCatalog = EMPTY
    state: State = State.READY
    inflight: int = 0


@dataclass
class FakeManager:
    connections: dict[str, FakeConnection] = field(default_factory=dict)
    generation: int = 0

    @property
    def pools(self) -> dict[str, Any]:
        return {}  # no replicas here; the per-replica gauges are tested end to end (test_routing_resilience.py)


class FakeClock:
    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


@dataclass
class FakeWebSockets:
    open_connections: int = 0


@dataclass
class FakeIngress:
    legacy: list[Any] = field(default_factory=list)
    websocket: FakeWebSockets = field(default_factory=FakeWebSockets)


@dataclass
class FakeGateway:
    manager: FakeManager
    events: Events = field(default_factory=Events)
    sessions: SessionTable = field(default_factory=lambda: SessionTable(FakeClock(), max_sessions=10, idle_seconds=60))
    hub: Hub = field(default_factory=Hub)
    parking: list[Any] = field(default_factory=list)
    app: FakeIngress = field(default_factory=FakeIngress)


def call(method: str, target: str | None = None, *, server: str | None = None, scope: str | None = None) -> Call:
    return Call(method, None, "modern", "2026-07-28", {}, None, "rid", scope=scope, server=server, target=target)


def test_labels_name_only_configured_servers_and_catalogued_tools() -> None:
    manager = FakeManager({"alpha": FakeConnection(catalog("echo"))})
    labels = Labels(manager)  # type: ignore[arg-type]
    assert labels.of_call(call("tools/call", "alpha__echo", server="alpha")) == ("alpha", "alpha__echo")
    # Unknown names: the server part still counts when it names a configured server.
    assert labels.of_call(call("tools/call", "alpha__nope")) == ("alpha", "other")
    assert labels.of_call(call("tools/call", "zeta__nope")) == ("other", "other")
    assert labels.of_call(call("tools/call", "plain")) == ("other", "other")
    assert labels.of_call(call("tools/call", None)) == ("other", "other")
    # A single-server endpoint uses names unchanged; the label is still the namespaced name.
    assert labels.of_call(call("tools/call", "echo", server="alpha", scope="alpha")) == ("alpha", "alpha__echo")
    # Calls that reach no server, and calls that are not tool calls.
    assert labels.of_call(call("tools/list")) == ("", "")
    assert labels.of_call(call("prompts/get", "alpha__p")) == ("alpha", "")


def test_a_tool_gets_its_own_label_once_a_catalog_lists_it() -> None:
    manager = FakeManager({"alpha": FakeConnection(catalog("echo"))})
    labels = Labels(manager)  # type: ignore[arg-type]
    assert labels.tool("alpha__grown") == "other"
    manager.connections["alpha"].catalog = catalog("echo", "grown")
    manager.generation += 1  # what the connection manager does on every catalog change
    assert labels.tool("alpha__grown") == "alpha__grown"


def scrape(text: str) -> list[Any]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_counters_histograms_and_gauges_in_one_scrape() -> None:
    manager = FakeManager(
        {"alpha": FakeConnection(catalog("echo", "add"), inflight=2), "beta": FakeConnection(state=State.DOWN)}
    )
    gateway = FakeGateway(manager)
    metrics = install(gateway)  # type: ignore[arg-type]
    gateway.sessions.create("/mcp", "2025-11-25", {}, None)
    for outcome in ("ok", "ok", "tool_error"):
        gateway.events.emit(CallFinished(call("tools/call", "alpha__echo", server="alpha"), outcome, None, 0.02, 0.01))
    gateway.events.emit(CallFinished(call("tools/call", "nope"), "error", -32602, 0.001, None))
    gateway.events.emit(CallFinished(call("custom/thing"), "error", -32601, 0.001, None))
    gateway.events.emit(UpstreamCallFinished("alpha", "tools/call", "alpha__echo", "rid", "ok", None, 0.01))

    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = scrape(body.decode())
    assert value(samples, "toolway_requests_total", tool="alpha__echo", outcome="ok") == 2
    assert value(samples, "toolway_requests_total", tool="alpha__echo", outcome="tool_error") == 1
    assert value(samples, "toolway_requests_total", server="other", tool="other", outcome="error") == 1
    assert value(samples, "toolway_requests_total", method="other") == 1
    assert value(samples, "toolway_request_duration_seconds_count", server="alpha", method="tools/call") == 3
    assert value(samples, "toolway_upstream_requests_total", server="alpha", outcome="ok") == 1
    assert value(samples, "toolway_upstream_duration_seconds_count", server="alpha") == 1
    assert value(samples, "toolway_upstream_inflight", server="alpha") == 2
    assert value(samples, "toolway_upstream_state", server="alpha", state="connected") == 1
    assert value(samples, "toolway_upstream_state", server="alpha", state="unreachable") == 0
    assert value(samples, "toolway_upstream_state", server="beta", state="unreachable") == 1
    assert value(samples, "toolway_catalog_items", server="alpha", kind="tools") == 2
    assert value(samples, "toolway_catalog_items", server="alpha", kind="prompts") == 1
    assert value(samples, "toolway_catalog_items", server="beta", kind="tools") == 0
    assert value(samples, "toolway_sessions", era="handshake") == 1
    assert value(samples, "toolway_sessions", era="modern") == 0
    assert value(samples, "toolway_connections", transport="websocket") == 0
    assert value(samples, "toolway_parked_calls") == 0


def test_series_stay_bounded_even_when_catalogs_grow() -> None:
    tools = [f"t{i}" for i in range(20)]
    gateway = FakeGateway(FakeManager({"alpha": FakeConnection(catalog(*tools))}))
    metrics = install(gateway, max_series=5)  # type: ignore[arg-type]
    for name in tools:
        gateway.events.emit(CallFinished(call("tools/call", f"alpha__{name}", server="alpha"), "ok", None, 0.01, None))
    samples = scrape(metrics.exposition()[0].decode())
    tool_values = {s.labels["tool"] for s in samples if s.name == "toolway_requests_total"}
    assert len(tool_values) == 6  # five catalogued tools, then "other"
    assert value(samples, "toolway_requests_total", tool="other") == 15


def test_each_gateway_has_its_own_registry() -> None:
    one = install(FakeGateway(FakeManager()))  # type: ignore[arg-type]
    two = install(FakeGateway(FakeManager()))  # type: ignore[arg-type]
    assert one.registry is not two.registry
