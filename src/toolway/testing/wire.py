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
