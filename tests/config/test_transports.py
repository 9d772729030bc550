"""The upstream transports a server entry may name, and the URLs each accepts."""

from __future__ import annotations

import pytest

from toolway.config import ConfigError, HttpServerConfig
from toolway.config.loader import load_config_text


def server(transport: str, url: str, extra: str = "") -> str:
    return f"servers: [{{name: a, transport: {transport}, url: '{url}'{extra}}}]\n"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source="toolway.yaml", environ={})
    return str(info.value)


@pytest.mark.parametrize(
    ("transport", "url"),
    [
        ("streamable-http", "https://example.test/mcp"),
        ("sse", "http://127.0.0.1:9000/sse"),
        ("auto", "http://127.0.0.1:9000/mcp"),
        ("websocket", "ws://127.0.0.1:9000/mcp"),
        ("websocket", "wss://example.test/mcp"),
        ("websocket", "http://127.0.0.1:9000/mcp"),
    ],
)
def test_http_family_transports_load(transport: str, url: str) -> None:
    loaded = load_config_text(server(transport, url), environ={}).servers[0]
    assert isinstance(loaded, HttpServerConfig)
    assert (loaded.transport, loaded.url) == (transport, url)


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "auto"])
def test_http_transports_refuse_websocket_urls(transport: str) -> None:
    message = error_of(server(transport, "ws://127.0.0.1:9000/mcp"))
    assert message == "toolway.yaml: servers.0.url: must be an http:// or https:// URL (got 'ws://127.0.0.1:9000/mcp')"


def test_websocket_refuses_other_schemes() -> None:
    message = error_of(server("websocket", "ftp://x"))
    assert message == "toolway.yaml: servers.0.url: must be a ws://, wss://, http:// or https:// URL (got 'ftp://x')"


def test_unknown_key_of_an_auto_server_lists_the_http_fields() -> None:
    # `auto` is also a value of `era:`; the tag must still resolve to the HTTP model.
    message = error_of(server("auto", "http://x", ", comand: [y]"))
    assert message == (
        "toolway.yaml: servers.0.comand: unknown field;"
        " expected one of: affinity, balance, breaker, credentials, description, enabled, endpoints, era,"
        " forward_headers, headers, health, keepalive_seconds, log_payloads, name, outlier_detection, owner,"
        " pinning, pool, reconnect, refresh_seconds, retries, sharing, tags, timeouts, tls, tool_timeouts,"
        " transport, url, version"
    )


def test_stdio_fields_are_refused_on_a_websocket_server() -> None:
    message = error_of(server("websocket", "ws://x", ", command: [y]"))
    assert message.startswith("toolway.yaml: servers.0.command: unknown field; expected one of: ")
