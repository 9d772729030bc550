"""Streamable HTTP upstream adapter over a shared, pooled aiohttp client.

One POST per message. The answer is JSON or an SSE stream; on a stream, the
response with the request's id ends the exchange and any message before it is
handed to `on_message` (notifications ride on the same stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from toolway.protocol.versions import H_SESSION_ID
from toolway.upstream.channel import ChannelClosed, SessionExpired
from toolway.upstream.sse import SSEParser

MessageSink = Callable[[dict[str, Any]], None]

_BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
_MAX_BODY = 64 * 1024 * 1024


class UpstreamHttpError(Exception):
    """The upstream answered HTTP with something that is not a JSON-RPC message."""


def new_client_session() -> aiohttp.ClientSession:
    """The gateway's one pooled client. Keep-alive idles out before typical servers' 5 s."""
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=4.0)
    return aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())


class HttpChannel:
    """A Streamable HTTP upstream endpoint. Not thread-safe; one per upstream session."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        http: aiohttp.ClientSession,
        *,
        on_message: MessageSink | None = None,
    ) -> None:
        self._url = url
        self._headers = {**_BASE_HEADERS, **headers}
        self._http = http
        self._on_message = on_message
        self.session_id: str | None = None

    def describe(self) -> str:
        return self._url

    async def open(self) -> None:
        self.session_id = None

    async def roundtrip(self, message: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        answer = await self._post(message, headers)
        if answer is None:
            raise UpstreamHttpError("the server answered a request with 202 and no response")
        return answer

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        await self._post(message, headers)

    async def close(self) -> None:
        if self.session_id is None:
            return
        session_id, self.session_id = self.session_id, None
        try:  # Best effort: tell a handshake-era server its session is over.
            timeout = aiohttp.ClientTimeout(total=2)
            headers = {**self._headers, "Mcp-Session-Id": session_id}
            async with self._http.delete(self._url, headers=headers, timeout=timeout):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass

    async def _post(self, message: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        all_headers = {**self._headers, **headers}
        if self.session_id is not None:
            all_headers["Mcp-Session-Id"] = self.session_id
        try:
            async with self._http.post(self._url, data=orjson.dumps(message), headers=all_headers) as resp:
                return await self._read(resp, message.get("id"), "Mcp-Session-Id" in all_headers)
        except aiohttp.ClientConnectorError as exc:
            raise ChannelClosed(f"cannot connect to {self._url}: {exc.os_error or exc}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise ChannelClosed(f"connection to {self._url} lost: {exc}") from None
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"HTTP error talking to {self._url}: {exc}") from None

    async def _read(
        self, resp: aiohttp.ClientResponse, want_id: Any, had_session: bool
    ) -> dict[str, Any] | None:
        if resp.status == 404 and had_session:
            raise SessionExpired(self._url)
        session_id = resp.headers.get(H_SESSION_ID)
        if session_id:
            self.session_id = session_id
        if resp.status == 202 or (want_id is None and resp.status < 300):
            return None
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/event-stream") and resp.status < 300:
            return await self._read_stream(resp, want_id)
        body = await resp.content.read(_MAX_BODY)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            snippet = body[:200].decode("utf-8", "replace")
            raise UpstreamHttpError(f"HTTP {resp.status} with a non-JSON body: {snippet!r}") from None
        if isinstance(answer, dict) and ("result" in answer or "error" in answer):
            return answer
        raise UpstreamHttpError(f"HTTP {resp.status} with a body that is not a JSON-RPC response")

    async def _read_stream(self, resp: aiohttp.ClientResponse, want_id: Any) -> dict[str, Any]:
        parser = SSEParser()
        async for chunk in resp.content.iter_any():
            for event in parser.feed(chunk):
                if event.event != "message" or not event.data:
                    continue
                try:
                    msg = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise UpstreamHttpError("an SSE event carried invalid JSON") from None
                if isinstance(msg, dict) and msg.get("id") == want_id and ("result" in msg or "error" in msg):
                    return msg
                if self._on_message is not None and isinstance(msg, dict):
                    self._on_message(msg)
        raise ChannelClosed(f"{self._url} closed the response stream before answering")
