"""The /mcp wire, byte for byte: both eras' rules from the MCP transport specs (2025-11-25, 2026-07-28)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from toolway.testing import RunningGateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

V = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "wire-test", "version": "0"},
}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def modern(method: str, params: dict[str, Any] | None = None, msg_id: int = 1) -> tuple[dict[str, Any], dict[str, str]]:
    body = {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": method,
        "params": {**(params or {}), "_meta": dict(ENVELOPE)},
    }
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": V, "Mcp-Method": method}
    if method in ("tools/call", "prompts/get"):
        headers["Mcp-Name"] = body["params"]["name"]
    return body, headers


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, Any] | None, aiohttp.typedefs.LooseHeaders]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=data, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None), resp.headers


# --- 2026-07-28 -------------------------------------------------------------------------------


async def test_discover_and_result_type(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, gateway.url, *modern("server/discover"))
    assert status == 200
    result = answer["result"]  # type: ignore[index]
    assert result["supportedVersions"] == [V]
    assert result["resultType"] == "complete"
    assert {"tools", "prompts", "resources"} <= set(result["capabilities"])


async def test_list_results_carry_ttl_and_cache_scope(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, gateway.url, *modern("tools/list"))
    assert status == 200
    result = answer["result"]  # type: ignore[index]
    assert result["resultType"] == "complete"
    assert isinstance(result["ttlMs"], int) and result["ttlMs"] >= 0
    # One upstream is handshake-era (no cache promise): the merged list must be private.
    assert result["cacheScope"] == "private"
    assert "nextCursor" in result  # page size 7, 18 tools


@pytest.mark.parametrize(
    ("header", "value"),
    [("Mcp-Method", "tools/list"), ("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Name", "alpha__add")],
)
async def test_header_body_mismatch_is_400_header_mismatch(
    gateway: RunningGateway, http: aiohttp.ClientSession, header: str, value: str
) -> None:
    body, headers = modern("tools/call", {"name": "alpha__echo", "arguments": {"text": "x"}})
    headers[header] = value
    status, answer, _ = await post(http, gateway.url, body, headers)
    assert status == 400
    assert answer["error"]["code"] == -32020  # type: ignore[index]
    assert answer["id"] == 1  # type: ignore[index]


async def test_missing_routing_header_is_header_mismatch(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("tools/list")
    del headers["Mcp-Method"]
    status, answer, _ = await post(http, gateway.url, body, headers)
    assert (status, answer["error"]["code"]) == (400, -32020)  # type: ignore[index]


async def test_duplicated_routing_header_is_refused(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("tools/list")
    raw = [*headers.items(), ("Mcp-Method", "tools/list")]
    async with http.post(gateway.url, data=orjson.dumps(body), headers=raw) as resp:  # type: ignore[arg-type]
        answer = orjson.loads(await resp.read())
    assert (resp.status, answer["error"]["code"]) == (400, -32020)


async def test_unsupported_version_lists_supported(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("tools/list")
    body["params"]["_meta"] = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    headers["MCP-Protocol-Version"] = "2099-01-01"
    status, answer, _ = await post(http, gateway.url, body, headers)
    assert status == 400
    assert answer["error"]["code"] == -32022  # type: ignore[index]
    assert answer["error"]["data"] == {"supported": [V], "requested": "2099-01-01"}  # type: ignore[index]


async def test_missing_meta_is_invalid_params(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("tools/list")
    del body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    status, answer, _ = await post(http, gateway.url, body, headers)
    assert (status, answer["error"]["code"]) == (400, -32602)  # type: ignore[index]
    assert "clientCapabilities" in answer["error"]["message"]  # type: ignore[index]


async def test_unknown_method_is_404(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(http, gateway.url, *modern("tools/frobnicate"))
    assert (status, answer["error"]["code"]) == (404, -32601)  # type: ignore[index]


@pytest.mark.parametrize("method", ["ping", "resources/subscribe", "logging/setLevel"])
async def test_methods_removed_in_2026_are_404(
    gateway: RunningGateway, http: aiohttp.ClientSession, method: str
) -> None:
    status, answer, _ = await post(http, gateway.url, *modern(method, {"uri": "ui://alpha/page", "level": "info"}))
    assert (status, answer["error"]["code"]) == (404, -32601)  # type: ignore[index]


async def test_modern_notification_is_202(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("notifications/whatever")
    del body["id"]
    status, answer, _ = await post(http, gateway.url, body, headers)
    assert (status, answer) == (202, None)


async def test_sse_only_accept_gets_an_event_stream(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("server/discover")
    headers["Accept"] = "text/event-stream"
    async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    data = next(line[len("data: ") :] for line in text.splitlines() if line.startswith("data: "))
    assert orjson.loads(data)["result"]["resultType"] == "complete"


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code", "msg_id"),
    [
        (b"{not json", -32700, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, None),
        (b'{"jsonrpc":"1.0","id":7,"method":"ping"}', -32600, 7),
        (b'"just a string"', -32600, None),
        (b'{"jsonrpc":"2.0","id":8,"method":"ping","params":[1]}', -32600, 8),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', -32600, None),
    ],
)
async def test_malformed_json_rpc_gets_a_json_rpc_error(
    gateway: RunningGateway, http: aiohttp.ClientSession, raw: bytes, code: int, msg_id: Any
) -> None:
    status, answer, _ = await post(http, gateway.url, raw, JSON_HEADERS)
    assert status == 400
    assert answer == {"jsonrpc": "2.0", "id": msg_id, "error": answer["error"]}  # type: ignore[index]
    assert answer["error"]["code"] == code  # type: ignore[index]


async def test_oversized_body_is_413(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    limit = gateway.config.limits.max_body_bytes
    status, answer, _ = await post(http, gateway.url, b" " * (limit + 1), JSON_HEADERS)
    assert status == 413
    assert str(limit) in answer["error"]["message"]  # type: ignore[index]


async def test_wrong_content_type_is_415(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    status, _, _ = await post(http, gateway.url, b"{}", {"Content-Type": "text/plain"})
    assert status == 415


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://localhost:3000"}, 200),
    ],
)
async def test_dns_rebinding_protection(
    gateway: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    body, base = modern("server/discover")
    got, _, _ = await post(http, gateway.url, body, {**base, **headers})
    assert got == status


async def test_unknown_path_is_404(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    for path in ("/nope", "/servers/nobody/mcp", "/servers/alpha/mcp/extra"):
        url = gateway.url.removesuffix("/mcp") + path
        status, _, _ = await post(http, url, *modern("ping"))
        assert status == 404, path


# --- handshake era ------------------------------------------------------------------------------


async def initialize(http: aiohttp.ClientSession, url: str, version: str = "2025-06-18") -> tuple[str, dict[str, Any]]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    status, answer, headers = await post(http, url, body, JSON_HEADERS)
    assert status == 200
    return headers["Mcp-Session-Id"], answer  # type: ignore[index, return-value]


async def test_initialize_negotiates_and_mints_random_session_ids(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    first, answer = await initialize(http, gateway.url, "2025-06-18")
    assert answer["result"]["protocolVersion"] == "2025-06-18"
    second, answer = await initialize(http, gateway.url, "1999-01-01")
    assert answer["result"]["protocolVersion"] == "2025-11-25"  # ours, when we don't speak theirs
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0


async def test_session_lifecycle(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    session, _ = await initialize(http, gateway.url)
    headers = {**JSON_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await post(http, gateway.url, note, headers))[0] == 202
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    status, answer, _ = await post(http, gateway.url, ping, headers)
    assert (status, answer) == (200, {"jsonrpc": "2.0", "id": 2, "result": {}})
    # A response from the client (to nothing we asked) is accepted and dropped.
    assert (await post(http, gateway.url, {"jsonrpc": "2.0", "id": 99, "result": {}}, headers))[0] == 202
    # The session belongs to the endpoint that opened it.
    assert (await post(http, gateway.server_url("alpha"), ping, headers))[0] == 404
    async with http.get(gateway.url, headers={**headers, "Accept": "text/event-stream"}) as resp:
        assert resp.status == 200  # the session's own stream (MCP 2025-11-25 "Listening for Messages")
        assert resp.headers["Content-Type"] == "text/event-stream"
        priming = await resp.content.readuntil(b"\n\n")
        assert priming.startswith(b"id: ") and b"retry: " in priming
    async with http.delete(gateway.url, headers=headers) as resp:
        assert resp.status == 200
    status, answer, _ = await post(http, gateway.url, ping, headers)
    assert status == 404
    async with http.delete(gateway.url, headers=headers) as resp:
        assert resp.status == 404


async def test_request_without_session_is_400(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    status, answer, _ = await post(http, gateway.url, ping, JSON_HEADERS)
    assert status == 400
    assert "Mcp-Session-Id" in answer["error"]["message"]  # type: ignore[index]
    status, _, _ = await post(http, gateway.url, ping, {**JSON_HEADERS, "Mcp-Session-Id": "f" * 32})
    assert status == 404


async def test_errors_inside_a_session_are_http_200(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    """Inside a live session a 404 would mean 'session gone': JSON-RPC errors travel as 200."""
    session, _ = await initialize(http, gateway.url)
    headers = {**JSON_HEADERS, "Mcp-Session-Id": session}
    unknown = {"jsonrpc": "2.0", "id": 4, "method": "tools/frobnicate"}
    status, answer, _ = await post(http, gateway.url, unknown, headers)
    assert (status, answer["error"]["code"]) == (200, -32601)  # type: ignore[index]


async def test_request_id_is_returned(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    body, headers = modern("ping")
    _, _, got = await post(http, gateway.url, body, {**headers, "X-Request-Id": "trace-me-42"})
    assert got["X-Request-Id"] == "trace-me-42"
