"""Streamable HTTP upstream adapter over a shared, pooled aiohttp client.

One POST per message. The answer is JSON or an SSE stream; on a stream, the
response with the request's id ends the exchange and every message before it is
handed to the request's `on_message` (progress, log messages, server requests).
`listen` holds the server's own stream open — the GET stream of a handshake-era
session, or a `subscriptions/listen` POST — for messages outside any request.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from toolway.protocol.errors import UpstreamError
from toolway.protocol.versions import H_SESSION_ID
from toolway.upstream.channel import NO_AUTH, ChannelClosed, OnMessage, SessionExpired, UpstreamAuth
from toolway.upstream.sse import SSEParser

_BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
_MAX_BODY = 64 * 1024 * 1024
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)


class UpstreamHttpError(Exception):
    """The upstream answered HTTP with something that is not a JSON-RPC message."""


def new_client_session(
    ssl_context: ssl.SSLContext | None = None, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The gateway's pooled client (one, plus one per server with its own TLS settings).
    Keep-alive idles out before typical servers' 5 s. `resolver` decides which addresses may
    be connected to (egress control, `policy/egress.py`)."""
    connector = aiohttp.TCPConnector(
        limit=256,
        limit_per_host=128,
        keepalive_timeout=4.0,
        ssl=ssl_context if ssl_context is not None else True,
        resolver=resolver,
    )
    return aiohttp.ClientSession(connector=connector, timeout=_NO_TIMEOUT)


class HttpChannel:
    """A Streamable HTTP upstream endpoint. One per upstream session."""

    attributes_messages = True

    def __init__(
        self, url: str, headers: dict[str, str], http: aiohttp.ClientSession, *, auth: UpstreamAuth = NO_AUTH
    ) -> None:
        self._url = url
        self._headers = {**_BASE_HEADERS, **headers}
        self._http = http
        self._auth = auth  # the gateway's credentials for this server, set last on every request
        self.session_id: str | None = None

    def describe(self) -> str:
        return self._url

    async def open(self) -> None:
        self.session_id = None

    async def roundtrip(
        self, message: dict[str, Any], headers: dict[str, str], on_message: OnMessage | None = None
    ) -> dict[str, Any]:
        answer = await self._post(message, headers, on_message)
        if answer is None:
            raise UpstreamHttpError("the server answered a request with 202 and no response")
        return answer

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        await self._post(message, headers, None)

    async def listen(self, on_message: OnMessage, message: dict[str, Any] | None, headers: dict[str, str]) -> str:
        """Hold the server's stream open and pass on its messages until it ends.

        With `message` None: the session's GET stream; otherwise a POST (e.g.
        `subscriptions/listen`). Returns why the stream ended; `ChannelClosed` when
        the connection failed.
        """
        all_headers = self._with_session({**self._headers, **headers, **await self._auth.headers()})
        try:
            if message is None:
                ctx = self._http.get(self._url, headers=all_headers)
            else:
                ctx = self._http.post(self._url, data=orjson.dumps(message), headers=all_headers)
            async with ctx as resp:
                if resp.status == 405:
                    return "the server offers no stream here (405)"
                if resp.status == 401:
                    self._auth.rejected()
                if resp.status >= 400 or not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                    return f"the server refused the stream (HTTP {resp.status})"
                await self._pump(resp, None, on_message)
                return "the server ended the stream"
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"stream from {self._url} failed: {exc}") from None

    async def close(self) -> None:
        if self.session_id is None:
            return
        session_id, self.session_id = self.session_id, None
        try:  # Best effort: tell a handshake-era server its session is over.
            timeout = aiohttp.ClientTimeout(total=2)
            headers = {**self._headers, **await self._auth.headers(), "Mcp-Session-Id": session_id}
            async with self._http.delete(self._url, headers=headers, timeout=timeout):
                pass
        except (aiohttp.ClientError, TimeoutError, UpstreamError):
            pass

    def _with_session(self, headers: dict[str, str]) -> dict[str, str]:
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def _post(
        self, message: dict[str, Any], headers: dict[str, str], on_message: OnMessage | None
    ) -> dict[str, Any] | None:
        all_headers = self._with_session({**self._headers, **headers, **await self._auth.headers()})
        try:
            async with self._http.post(self._url, data=orjson.dumps(message), headers=all_headers) as resp:
                want_id = message.get("id") if "method" in message else None  # None: nothing to wait for
                return await self._read(resp, want_id, "Mcp-Session-Id" in all_headers, on_message)
        except aiohttp.ClientConnectorError as exc:
            # Refused before a byte of the request was written: provably not delivered.
            raise ChannelClosed(f"cannot connect to {self._url}: {exc.os_error or exc}", delivered=False) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise ChannelClosed(f"connection to {self._url} lost: {exc}") from None
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"HTTP error talking to {self._url}: {exc}") from None

    async def _read(
        self, resp: aiohttp.ClientResponse, want_id: Any, had_session: bool, on_message: OnMessage | None
    ) -> dict[str, Any] | None:
        if resp.status == 404 and had_session:
            raise SessionExpired(self._url)
        if resp.status == 401:
            self._auth.rejected()
        session_id = resp.headers.get(H_SESSION_ID)
        if session_id:
            self.session_id = session_id
        if resp.status == 202 or (want_id is None and resp.status < 300):
            return None
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/event-stream") and resp.status < 300:
            answer = await self._pump(resp, want_id, on_message)
            if answer is None:
                raise ChannelClosed(f"{self._url} closed the response stream before answering")
            return answer
        body = await resp.content.read(_MAX_BODY)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            snippet = body[:200].decode("utf-8", "replace")
            raise UpstreamHttpError(f"HTTP {resp.status} with a non-JSON body: {snippet!r}") from None
        if isinstance(answer, dict) and ("result" in answer or "error" in answer):
            return answer
        raise UpstreamHttpError(f"HTTP {resp.status} with a body that is not a JSON-RPC response")

    async def _pump(
        self, resp: aiohttp.ClientResponse, want_id: Any, on_message: OnMessage | None
    ) -> dict[str, Any] | None:
        """Read SSE events; return the response to `want_id`, handing everything else on."""
        parser = SSEParser()
        try:
            async for chunk in resp.content.iter_any():
                for event in parser.feed(chunk):
                    if event.event != "message" or not event.data:
                        continue
                    try:
                        msg = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        raise UpstreamHttpError("an SSE event carried invalid JSON") from None
                    if not isinstance(msg, dict):
                        continue
                    if want_id is not None and msg.get("id") == want_id and "method" not in msg:
                        return msg
                    if on_message is not None:
                        on_message(msg)
        except ValueError as exc:
            raise UpstreamHttpError(str(exc)) from None
        return None
