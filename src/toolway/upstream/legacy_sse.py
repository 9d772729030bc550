"""The 2024-11-05 HTTP+SSE upstream transport: one long GET stream in, one POST per message out.

The server's first event on the stream, `endpoint`, names the URL to POST messages
to; every answer and every message of the server's own comes back on the stream, so
nothing on the wire says which request a log line or a server request belongs to.
`Correlator` matches responses to requests by id for this and the other
message-stream transports (WebSocket). `says_wrong_transport` and `sse_urls` are
what `transport: auto` needs to tell such a server from a Streamable HTTP one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import orjson
import structlog

from toolway.upstream.channel import NO_AUTH, ChannelClosed, OnMessage, UpstreamAuth
from toolway.upstream.http import UpstreamHttpError
from toolway.upstream.sse import SSEParser

log = structlog.get_logger("toolway.upstream.sse")

_JSON_HEADERS = {"Content-Type": "application/json"}
_PROBE = orjson.dumps({"jsonrpc": "2.0", "id": "toolway-transport-probe", "method": "ping"})
_SNIPPET = 200


class NotAnEventStream(ChannelClosed):
    """A GET on the URL answered with something other than an event stream."""


class Correlator:
    """Matches responses to requests by JSON-RPC id and hands every other message on.

    For transports whose one inbound stream carries everything: responses resolve the
    future of the request with their id; requests and notifications from the server go
    to the `on_message` given to `deliver`. Malformed input is logged and dropped, so one
    bad message never takes the connection down.
    """

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.closed_reason: str | None = None

    def reset(self) -> None:
        """The transport (re)opened: requests may be sent again."""
        self.closed_reason = None

    def expect(self, msg_id: Any) -> asyncio.Future[dict[str, Any]]:
        """Register a request before it is sent, so an early answer is not lost.

        Raises:
            ChannelClosed: the transport is closed.
        """
        if self.closed_reason is not None:
            raise ChannelClosed(self.closed_reason)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        return future

    def forget(self, msg_id: Any) -> None:
        future = self._pending.pop(msg_id, None)
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # Retrieved: no "exception was never retrieved" from the loop.

    def deliver(self, raw: str | bytes, on_message: OnMessage | None) -> None:
        """Dispatch one serialized JSON-RPC message (or batch) from the server."""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("upstream sent invalid JSON; dropped", peer=self._peer, data=_snippet(raw))
            return
        for msg in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(msg, dict):
                log.warning("upstream sent a JSON-RPC message that is not an object; dropped", peer=self._peer)
            elif "method" not in msg and ("result" in msg or "error" in msg):
                future = self._pending.get(msg.get("id"))
                if future is not None and not future.done():
                    future.set_result(msg)
                else:
                    log.debug("upstream answered no pending request", peer=self._peer, id=msg.get("id"))
            elif isinstance(msg.get("method"), str):
                if on_message is not None:
                    on_message(msg)
            else:
                log.warning("upstream sent a message that is not JSON-RPC; dropped", peer=self._peer)

    def fail_all(self, reason: str) -> None:
        """The transport is gone: every waiting request fails with `ChannelClosed(reason)`."""
        self.closed_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(reason))


class LegacySseChannel:
    """One HTTP+SSE session with a server of the 2024-11-05 transport.

    `open` holds the event stream open in a reader task owned by the channel (cancelled
    and awaited by `close`). When the stream ends or fails, waiting requests fail with
    `ChannelClosed` and `on_close(reason)` tells the owner.
    """

    session_id: str | None = None
    attributes_messages = False

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        http: aiohttp.ClientSession,
        *,
        on_close: Callable[[str], None] | None = None,
        on_message: OnMessage | None = None,
        auth: UpstreamAuth = NO_AUTH,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._http = http
        self._auth = auth  # the gateway's credentials for this server, on the GET and every POST
        self._on_close = on_close
        self.on_message = on_message
        self._calls = Correlator(url)
        self._endpoint: str | None = None
        self._stream: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return self._url

    @property
    def endpoint(self) -> str | None:
        """The URL messages are POSTed to, once the server has named it."""
        return self._endpoint

    async def open(self) -> None:
        """GET the event stream and wait for its `endpoint` event (the caller bounds the wait).

        Raises:
            NotAnEventStream: the GET answered with something other than an event stream.
            ChannelClosed: no connection, the stream ended before naming its endpoint, or
                the endpoint is on another origin (our headers must not go there).
        """
        await self.close()
        self._calls.reset()
        try:
            headers = {**self._headers, **await self._auth.headers(), "Accept": "text/event-stream"}
            resp = await self._http.get(self._url, headers=headers)
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"cannot connect to {self._url}: {exc}") from None
        ctype = resp.headers.get("Content-Type", "")
        if resp.status == 401:
            self._auth.rejected()
        if resp.status != 200 or not ctype.startswith("text/event-stream"):
            resp.close()
            raise NotAnEventStream(f"GET {self._url} answered HTTP {resp.status} {ctype or 'without a body type'}")
        self._stream = resp
        named: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(resp, named), name=f"sse-reader {self._url}")
        try:
            self._endpoint = self._same_origin(await named)
        except BaseException:
            await self.close()
            raise

    async def roundtrip(
        self, message: dict[str, Any], headers: dict[str, str], on_message: OnMessage | None = None
    ) -> dict[str, Any]:
        future = self._calls.expect(message["id"])
        try:
            await self._post(message, headers)
            return await future
        finally:
            self._calls.forget(message["id"])

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        await self._post(message, headers)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self._endpoint = None
        self._calls.fail_all("the gateway closed the connection")

    async def _post(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        """POST one message to the endpoint; its answer, if any, comes on the stream.

        Raises:
            ChannelClosed: the channel is not open, the POST failed, or the server no
                longer knows this session (404).
            UpstreamHttpError: the server refused the message.
        """
        endpoint = self._endpoint
        if endpoint is None or self._calls.closed_reason is not None:
            raise ChannelClosed(self._calls.closed_reason or f"the event stream from {self._url} is not open")
        all_headers = {**self._headers, **headers, **await self._auth.headers(), **_JSON_HEADERS}
        try:
            async with self._http.post(endpoint, data=orjson.dumps(message), headers=all_headers) as resp:
                if resp.status < 300:
                    return
                status, body = resp.status, await resp.content.read(_SNIPPET)
        except aiohttp.ClientError as exc:
            raise ChannelClosed(f"POST to {endpoint} failed: {exc}") from None
        if status == 404:
            raise ChannelClosed(f"{self._url} no longer knows our SSE session (HTTP 404)")
        if status == 401:
            self._auth.rejected()
        raise UpstreamHttpError(f"HTTP {status} to a message POST: {_snippet(body)!r}")

    async def _read(self, resp: aiohttp.ClientResponse, named: asyncio.Future[str]) -> None:
        parser = SSEParser()
        reason = f"{self._url} ended the event stream"
        try:
            async for chunk in resp.content.iter_any():
                for event in parser.feed(chunk):
                    if event.event == "endpoint":
                        if event.data.strip() and not named.done():
                            named.set_result(event.data.strip())
                    elif event.event == "message":
                        self._calls.deliver(event.data, self.on_message)
        except ValueError as exc:  # An oversized event: a broken or hostile server.
            reason = f"{self._url} sent an unusable event stream: {exc}"
        except aiohttp.ClientError as exc:
            reason = f"event stream from {self._url} lost: {exc}"
        finally:
            resp.close()
        self._calls.fail_all(reason)
        if not named.done():
            named.set_exception(ChannelClosed(f"{reason} before naming its message endpoint"))
        elif self._on_close is not None:
            self._on_close(reason)

    def _same_origin(self, endpoint: str) -> str:
        resolved = urljoin(self._url, endpoint)
        base, target = urlsplit(self._url), urlsplit(resolved)
        if (base.scheme, base.netloc) != (target.scheme, target.netloc):
            raise ChannelClosed(f"{self._url} named a message endpoint on another origin: {resolved}")
        return resolved


async def says_wrong_transport(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    """Whether a POST to `url` answers as if no Streamable HTTP endpoint were there.

    That is 404, 405, or a 400 whose body is no JSON-RPC message — the spec's test
    (2025-03-26, backwards compatibility) for a server of the older HTTP+SSE transport.

    Raises:
        ChannelClosed: `url` cannot be reached.
    """
    all_headers = {**headers, **_JSON_HEADERS, "Accept": "application/json, text/event-stream"}
    try:
        async with http.post(url, data=_PROBE, headers=all_headers) as resp:
            if resp.status in (404, 405):
                return True
            if resp.status != 400:
                return False
            body = await resp.content.read(64 * 1024)
    except aiohttp.ClientError as exc:
        raise ChannelClosed(f"cannot connect to {url}: {exc}") from None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(parsed, dict) and parsed.get("jsonrpc") == "2.0")


def sse_urls(url: str) -> list[str]:
    """Where a server configured at `url` may keep its event stream, in the order to try.

    `url` itself, then `url` with its last path segment replaced by `sse`
    (`http://h/mcp` → `http://h/sse`), the path the SDKs serve it at.
    """
    parts = urlsplit(url)
    head, _, _last = parts.path.rstrip("/").rpartition("/")
    sibling = urlunsplit(parts._replace(path=f"{head}/sse"))
    return [url] if sibling == url else [url, sibling]


def _snippet(raw: str | bytes) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:_SNIPPET]
