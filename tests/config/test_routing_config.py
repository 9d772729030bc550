"""Config of replicas, balancing and resilience: defaults that keep one-URL servers as they were,
and errors that name the field."""

from __future__ import annotations

import pytest

from toolway.config import ConfigError, HttpServerConfig, StdioServerConfig
from toolway.config.loader import load_config_text


def load(text: str) -> HttpServerConfig | StdioServerConfig:
    return load_config_text(text, source="toolway.yaml", environ={}).servers[0]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source="toolway.yaml", environ={})
    return str(info.value)


def test_a_one_url_server_gets_the_defaults() -> None:
    server = load("servers: [{name: a, transport: streamable-http, url: 'http://x/mcp'}]")
    assert isinstance(server, HttpServerConfig)
    assert server.endpoints is None
    assert server.balance.strategy == "least_inflight"
    assert server.affinity is False
    assert (server.retries.attempts, server.breaker.failure_threshold) == (3, 5)
    assert server.timeouts.first_byte is None and server.timeouts.progress_max is None


def test_endpoints_with_weights_zones_and_versions() -> None:
    server = load(
        "servers: [{name: a, transport: streamable-http, balance: {strategy: weighted}, endpoints: ["
        "{url: 'http://x/mcp', weight: 9, zone: eu, version: v1},"
        "{url: 'http://y/mcp', weight: 1, id: canary, version: v2}]}]"
    )
    assert isinstance(server, HttpServerConfig) and server.endpoints is not None
    assert [(e.weight, e.zone, e.version, e.id) for e in server.endpoints] == [
        (9, "eu", "v1", None),
        (1, None, "v2", "canary"),
    ]


def test_pool_defaults_keep_one_session_and_refuse_when_full() -> None:
    server = load("servers: [{name: a, transport: streamable-http, url: 'http://x/mcp'}]")
    pool = server.pool
    assert (pool.max_connections, pool.max_inflight, pool.max_waiting, pool.warm) == (None, None, 0, 1)
    assert (pool.idle_seconds, pool.keepalive, pool.max_wait_seconds, server.sharing) == (300.0, True, None, "auto")
    shared = load(
        "servers: [{name: a, transport: stdio, command: [x], sharing: shared,"
        " pool: {max_connections: 4, max_inflight: 8, max_waiting: 100, warm: 2, idle_seconds: 30, keepalive: false}}]"
    )
    assert shared.sharing == "shared" and (shared.pool.max_connections, shared.pool.warm) == (4, 2)


def test_stdio_replicas() -> None:
    server = load("servers: [{name: a, transport: stdio, command: [x], replicas: 4}]")
    assert isinstance(server, StdioServerConfig) and server.replicas == 4


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("url: 'http://x/mcp', endpoints: [{url: 'http://y/mcp'}]", "give either 'url' or 'endpoints'"),
        ("endpoints: []", "at least one endpoint"),
        ("endpoints: [{url: 'http://x/mcp', id: a}, {url: 'http://y/mcp', id: a}]", "ids must be unique"),
        ("endpoints: [{url: 'ftp://x'}]", "servers.0.endpoints.0.url: must be an http://"),
        ("endpoints: [{url: 'http://x', weight: -1}]", "servers.0.endpoints.0.weight"),
        ("url: 'http://x', balance: {strategy: fastest}", "servers.0.balance.strategy"),
        ("url: 'http://x', balance: {hash_key: cookie}", "'principal', 'header:<name>' or 'argument:<name>'"),
        ("url: 'http://x', retries: {attempts: 0}", "servers.0.retries.attempts"),
        ("url: 'http://x', breaker: {open_seconds: 0}", "servers.0.breaker.open_seconds"),
        ("url: 'http://x', outlier_detection: {max_ejected_percent: 150}", "max_ejected_percent"),
        ("url: 'http://x', pool: {max_inflight: 0}", "servers.0.pool.max_inflight"),
        ("url: 'http://x', timeouts: {first_byte: 0}", "servers.0.timeouts.first_byte"),
        ("url: 'http://x', pool: {warm: 3, max_connections: 2}", "warm (3) must not exceed max_connections (2)"),
        ("url: 'http://x', pool: {idle_seconds: 0}", "servers.0.pool.idle_seconds"),
        ("url: 'http://x', pool: {max_waiting: -1}", "servers.0.pool.max_waiting"),
        ("url: 'http://x', sharing: private", "servers.0.sharing"),
    ],
)
def test_bad_routing_config_names_the_field(entry: str, expected: str) -> None:
    message = error_of(f"servers: [{{name: a, transport: streamable-http, {entry}}}]")
    assert expected in message, message


def test_replicas_are_bounded() -> None:
    assert "servers.0.replicas" in error_of("servers: [{name: a, transport: stdio, command: [x], replicas: 0}]")
