"""Raw-HTTP helpers for tests that look at the wire itself (SSE frames, ids, headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from toolway.upstream.sse import Event, SSEParser

V = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
ACCEPT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def modern_request(method: str, params: dict[str, Any], msg_id: int | str = 1) -> tuple[dict[str, Any], dict[str, str]]:
    meta = {**ENVELOPE, **params.pop("_meta", {})}
    body = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {**params, "_meta": meta}}
    headers = {**ACCEPT, "MCP-Protocol-Version": V, "Mcp-Method": method}
    if method in ("tools/call", "prompts/get"):
        headers["Mcp-Name"] = params["name"]
    return body, headers


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """SSE events of a response as they arrive (comments are not events)."""
    parser = SSEParser()
    async for chunk in resp.content.iter_any():
        for event in parser.feed(chunk):
            yield event


def messages(collected: list[Event]) -> list[dict[str, Any]]:
    return [orjson.loads(e.data) for e in collected if e.data]


async def initialize(http: aiohttp.ClientSession, url: str, capabilities: dict[str, Any] | None = None) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities or {},
            "clientInfo": {"name": "wire", "version": "0"},
        },
    }
    async with http.post(url, data=orjson.dumps(body), headers=ACCEPT) as resp:
        session = resp.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, data=orjson.dumps(note), headers=session_headers(session)):
        pass
    return session


def session_headers(session: str) -> dict[str, str]:
    return {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}


def tool_call(name: str, arguments: dict[str, Any], msg_id: int | str = 1, token: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}


async def call_tool(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    arguments: dict[str, Any],
    msg_id: int | str = 1,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One stateless-era `tools/call`; the JSON-RPC response (result or error), JSON or SSE framed.

    Raises:
        AssertionError: the answer is neither (an SSE stream that ends without the response).
    """
    body, request_headers = modern_request("tools/call", {"name": name, "arguments": arguments}, msg_id)
    async with http.post(url, data=orjson.dumps(body), headers={**request_headers, **(headers or {})}) as resp:
        if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            answer: dict[str, Any] = orjson.loads(await resp.read())
            return answer
        async for event in events(resp):
            msg = orjson.loads(event.data) if event.data else None
            if isinstance(msg, dict) and msg.get("id") == msg_id and "method" not in msg:
                return msg
    raise AssertionError(f"the stream of {name} ended without a response")


def text_of(answer: dict[str, Any]) -> str:
    """The first text content of a tool call's JSON-RPC response. Raises AssertionError on an error."""
    assert "result" in answer, answer
    return str(answer["result"]["content"][0]["text"])
