"""One upstream server's connection: connect, keep, reconnect with back-off, call with a deadline.

A supervisor task per server owns the connection's life: it connects (probe or
handshake, then the catalog), waits until the connection is lost, backs off, and
tries again. Calls never wait on a dead server: while it is down they fail at
once with the last cause; a slow one fails its own calls at their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from toolway.clock import Clock
from toolway.config.model import HttpServerConfig, StdioServerConfig, Timeouts
from toolway.pipeline.context import Sink
from toolway.protocol.errors import (
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamIncompatible,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamRpcError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from toolway.registry.catalog import EMPTY, ServerCatalog, fetch_catalog
from toolway.sessions.deadline import WatchedSink
from toolway.sessions.listening import listen_once
from toolway.upstream.channel import NO_AUTH, Channel, ChannelClosed, SessionExpired, UpstreamAuth
from toolway.upstream.client import Negotiated, UpstreamClient
from toolway.upstream.http import HttpChannel
from toolway.upstream.legacy_sse import LegacySseChannel, NotAnEventStream, says_wrong_transport, sse_urls
from toolway.upstream.stdio import StdioChannel
from toolway.upstream.websocket import WebSocketChannel

log = structlog.get_logger("toolway.upstream")


class State(enum.Enum):
    CONNECTING = "connecting"
    READY = "connected"
    DOWN = "unreachable"


class UpstreamConnection:
    """One upstream session with one server (for stdio: one process).

    The gateway's own session of each replica (`pooled=False`) fetches the catalog, holds the
    listen stream and reconnects for ever. A pooled session (`pooled=True`, opened by the
    replica's `SessionPool` for callers) does none of that: it connects once and ends when lost.
    """

    def __init__(
        self,
        config: StdioServerConfig | HttpServerConfig,
        http: aiohttp.ClientSession,
        clock: Clock,
        on_change: Callable[[UpstreamConnection], None],
        on_notification: Callable[[UpstreamConnection, dict[str, Any]], None] | None = None,
        auth: UpstreamAuth = NO_AUTH,
        *,
        pooled: bool = False,
        keepalive: bool = True,
    ) -> None:
        self.config = config
        self.pooled = pooled
        self._keepalive = keepalive
        self._auth = auth  # the gateway's own credentials for this server (upstream/credentials.py)
        # The client's request headers passed through (config `forward_headers`, lowercase).
        self.forward_headers = tuple(config.forward_headers) if isinstance(config, HttpServerConfig) else ()
        self.name = config.name
        self._http = http
        self._clock = clock
        self._on_change = on_change
        self._on_notification = on_notification
        self.resource_subscriptions: set[str] = set()  # URIs some client subscribed to here
        self._listen: asyncio.Task[None] | None = None
        self.state = State.CONNECTING
        self.last_error: str | None = None
        self.negotiated: Negotiated | None = None
        self.catalog: ServerCatalog = EMPTY
        self._client: UpstreamClient | None = None
        self._settled = asyncio.Event()  # set when a connect attempt has finished, either way
        self._lost = asyncio.Event()
        self._spawn: Callable[[Any], None] | None = None
        self.inflight = 0  # calls sent and not yet answered
        self._idle = asyncio.Event()  # set while nothing is in flight (removal drains on it)
        self._idle.set()
        # Set when the server speaks no protocol version Toolway can bridge: why, for the registry.
        self.incompatible: str | None = None
        # The transport actually spoken: `transport: auto` leaves it None until a connection
        # works, then remembers it (and the URL that worked) for every reconnect.
        self.effective_transport: str | None = None if config.transport == "auto" else config.transport
        self._url = config.url if isinstance(config, HttpServerConfig) else None

    def pid(self) -> int | None:
        """The stdio child's process id, while one runs."""
        channel = self._client.channel if self._client is not None else None
        return channel.pid if isinstance(channel, StdioChannel) else None

    def endpoint(self) -> str:
        """The URL spoken to (after any `auto` fallback), or the stdio command."""
        if isinstance(self.config, HttpServerConfig):
            return self._url or self.config.url
        return " ".join(self.config.command)

    def follow(self, other: UpstreamConnection) -> None:
        """Speak the transport (and URL) `other` found to work (`transport: auto`)."""
        self.effective_transport, self._url = other.effective_transport, other._url

    async def supervise(self, spawn: Callable[[Any], None], *, once: bool = False) -> None:
        """Run until cancelled: connect, wait for loss, back off, reconnect.

        `once`: connect once and return when that attempt fails or the session is lost.
        """
        self._spawn = spawn
        delay = self.config.reconnect.initial
        try:
            while True:
                if await self._connect_once():
                    delay = self.config.reconnect.initial
                    await self._keep_alive()
                    await self._drop_client()
                if once:
                    return
                await self._clock.sleep(delay)
                delay = min(delay * 2, self.config.reconnect.max)
        finally:
            await self._drop_client()

    async def _keep_alive(self) -> None:
        """Until the connection is lost: ping a handshake-era server when it has been quiet.

        An idle session behind a load balancer would otherwise be cut, and a server
        that died silently would only be noticed by the next caller.
        """
        interval = self.config.keepalive_seconds
        while not self._lost.is_set():
            try:
                async with asyncio.timeout(interval):
                    await self._lost.wait()
                return
            except TimeoutError:
                pass
            client = self._client
            negotiated = self.negotiated
            if not self._keepalive or client is None or negotiated is None:
                continue
            if negotiated.era != "handshake" or self.inflight:
                continue
            try:
                async with asyncio.timeout(min(interval, self.config.timeouts.call)):
                    await client.request("ping", None)
            except (TimeoutError, ChannelClosed, SessionExpired) as exc:
                self._mark_lost(client, f"keep-alive ping failed: {exc or 'no answer'}")
            except (UpstreamError, UpstreamRpcError):
                pass  # It answered, if oddly: it is alive.

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        client_capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sink: Sink | None = None,
        log_level: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - what is left of the caller's budget
        limits: Timeouts | None = None,
    ) -> dict[str, Any]:
        """Call the server within its deadline. `sink` carries what the server sends meanwhile.

        The deadline is `timeout` (else `limits.call`), with the first-byte phase and renewal by
        progress of `limits` (see `sessions/deadline.py`); `limits` defaults to the server's
        `timeouts` (the dispatcher passes a tool's own, `tool_timeouts`).

        Raises:
            UpstreamUnavailable: the server is down (the request was not sent);
                `UpstreamRefused` when the connection was refused, `UpstreamConnectionLost`
                when it broke while the request was out.
            UpstreamTimeout: no answer within the deadline.
            UpstreamProtocolError: the server's answer is not MCP.
            UpstreamRpcError: the server answered with a JSON-RPC error.
        """
        client = await self._ready_client()
        msg_id = client.next_id()
        limits = limits or self.config.timeouts
        total = limits.call if timeout is None else timeout
        loop_start = asyncio.get_running_loop().time()
        first = WatchedSink.first_deadline(loop_start, total, limits.first_byte)
        self.inflight += 1
        self._idle.clear()
        watched: WatchedSink | None = None
        try:
            async with asyncio.timeout_at(first) as deadline:
                if sink is not None and (limits.first_byte is not None or limits.progress_max is not None):
                    watched = WatchedSink(
                        sink,
                        deadline,
                        started=loop_start,
                        total=total,
                        first_byte=limits.first_byte,
                        progress_max=limits.progress_max,
                    )
                return await client.request(
                    method,
                    params,
                    client_capabilities=client_capabilities,
                    client_info=client_info,
                    headers=headers,
                    msg_id=msg_id,
                    sink=watched or sink,
                    log_level=log_level,
                )
        except asyncio.CancelledError:
            # The client cancelled (or went away, in the stateless era): so does the server.
            if self._spawn is not None:
                self._spawn(_quietly(lambda: client.cancel(msg_id, "the client cancelled the request")))
            raise
        except TimeoutError:
            if self._spawn is not None:
                reason = f"the gateway's {total:.3g}s deadline passed"
                self._spawn(_quietly(lambda: client.cancel(msg_id, reason)))
            if watched is not None and not watched.heard:
                phase = f"no first answer to {method} within {limits.first_byte:g}s (timeouts.first_byte)"
                raise UpstreamTimeout(self.name, phase) from None
            renewed = " (renewed by progress)" if limits.progress_max is not None else ""
            raise UpstreamTimeout(self.name, f"no answer to {method} within {total:.3g}s{renewed}") from None
        except SessionExpired:
            self._mark_lost(client, "the server ended our session")
            raise UpstreamUnavailable(self.name, "the server ended our session; reconnecting") from None
        except ChannelClosed as exc:
            self._mark_lost(client, str(exc))
            if exc.delivered:
                raise UpstreamConnectionLost(self.name, str(exc)) from None
            raise UpstreamRefused(self.name, str(exc)) from None
        finally:
            self.inflight -= 1
            if not self.inflight:
                self._idle.set()

    async def drained(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound on the wait, not a deadline API
        """Wait (up to `timeout` seconds) until no call is in flight; False if some still are."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def refresh_catalog(self) -> None:
        """Fetch the catalog again (e.g. a call named a tool we have not seen)."""
        client = self._client
        if client is None or self.negotiated is None:
            return
        try:
            self.catalog = await fetch_catalog(self.negotiated.capabilities, self._fetch)
        except (UpstreamError, UpstreamRpcError) as exc:
            log.warning("catalog refresh failed", server=self.name, error=str(exc))
            return
        self._on_change(self)

    async def wait_ready(self) -> None:
        """Wait (up to `timeouts.connect`) for a first connect under way.

        Raises: UpstreamUnavailable when the session is not connected then.
        """
        await self._ready_client()

    async def _ready_client(self) -> UpstreamClient:
        if self.state is State.CONNECTING:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.timeouts.connect):
                    await self._settled.wait()
        client = self._client
        if self.state is not State.READY or client is None:
            cause = self.last_error or "still connecting"
            raise UpstreamUnavailable(self.name, f"unavailable ({cause}); the gateway keeps retrying")
        return client

    async def _connect_once(self) -> bool:
        self.state = State.CONNECTING
        self._settled.clear()
        self._lost.clear()
        try:
            async with asyncio.timeout(self.config.timeouts.connect):
                self._client = await self._open_client()
                self.negotiated = negotiated = self._client.negotiated
                assert negotiated is not None
                if not self.pooled:  # a pool session serves calls; the catalog is the gateway's
                    self.catalog = await fetch_catalog(negotiated.capabilities, self._fetch)
        except Exception as exc:
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            self.state, self.last_error = State.DOWN, _describe(exc, self.config.timeouts.connect)
            self.incompatible = exc.cause if isinstance(exc, UpstreamIncompatible) else None
            log.warning("upstream connect failed", server=self.name, error=self.last_error)
            self._settled.set()
            self._on_change(self)
            return False
        self.state, self.last_error, self.incompatible = State.READY, None, None
        if not self.pooled:
            self._start_listening()
        (log.debug if self.pooled else log.info)(
            "upstream connected",
            server=self.name,
            era=negotiated.era,
            protocol_version=negotiated.protocol_version,
            tools=len(self.catalog.get("tools/list")),
        )
        self._settled.set()
        self._on_change(self)
        return True

    async def _fetch(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        assert self._client is not None
        return await self._client.request(method, params)

    async def _open_client(self) -> UpstreamClient:
        """A connected client over the configured transport (for `auto`: the one that works).

        `auto` tries Streamable HTTP; when that fails and the server answers a POST like
        a server of the 2024-11-05 transport, it tries HTTP+SSE at the same URL, then at
        the sibling `…/sse`. What worked is kept; a later protocol failure forgets it.

        Raises: what `UpstreamClient.connect` raises.
        """
        config = self.config
        if not isinstance(config, HttpServerConfig) or config.transport != "auto":
            return await self._connect_over(self._new_channel(config.transport))
        if self.effective_transport is not None:
            try:
                return await self._connect_over(self._new_channel(self.effective_transport))
            except (UpstreamProtocolError, NotAnEventStream):
                self.effective_transport, self._url = None, config.url  # The server changed: probe again.
                raise
        try:
            client = await self._connect_over(self._new_channel("streamable-http"))
        except UpstreamProtocolError:
            probe_headers = {**config.headers, **await self._auth.headers()}
            if not await says_wrong_transport(self._http, config.url, probe_headers):
                raise
            client = await self._fall_back_to_sse(config)
        else:
            self.effective_transport = "streamable-http"
        return client

    async def _fall_back_to_sse(self, config: HttpServerConfig) -> UpstreamClient:
        """Raises: `NotAnEventStream` when no candidate URL serves an event stream."""
        error = NotAnEventStream(f"no event stream at {config.url}")
        for url in sse_urls(config.url):
            channel = LegacySseChannel(
                url, dict(config.headers), self._http, on_close=self._channel_closed, auth=self._auth
            )
            try:
                client = await self._connect_over(channel)
            except NotAnEventStream as exc:
                error = exc
                continue
            self.effective_transport, self._url = "sse", url
            log.info("upstream speaks the HTTP+SSE transport", server=self.name, url=url)
            return client
        raise error

    async def _connect_over(self, channel: Channel) -> UpstreamClient:
        """Connect a client over `channel`; on failure close it and re-raise."""
        client = UpstreamClient(
            self.name, channel, era=self.config.era, spawn=self._spawn, on_session_message=self._session_message
        )
        try:
            await client.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise
        return client

    def _new_channel(self, transport: str) -> Channel:
        config = self.config
        if isinstance(config, StdioServerConfig):
            command, env = list(config.command), dict(config.env)
            return StdioChannel(config.name, command, env, config.cwd, on_close=self._channel_closed)
        url, headers = self._url or config.url, dict(config.headers)
        if transport == "sse":
            return LegacySseChannel(url, headers, self._http, on_close=self._channel_closed, auth=self._auth)
        if transport == "websocket":
            return WebSocketChannel(url, headers, self._http, on_close=self._channel_closed, auth=self._auth)
        return HttpChannel(url, headers, self._http, auth=self._auth)

    def _channel_closed(self, reason: str) -> None:
        """A message-stream channel (stdio, SSE, WebSocket) lost its transport."""
        self._mark_lost(None, reason)

    def _mark_lost(self, client: UpstreamClient | None, reason: str) -> None:
        if client is not None and client is not self._client:
            return  # An old connection's late failure; the current one is fine.
        if self.state is State.READY:
            log.warning("upstream connection lost", server=self.name, error=reason)
            self.state, self.last_error = State.DOWN, reason
            self._on_change(self)
        self._lost.set()

    async def update_subscriptions(self) -> None:
        """The set of subscribed URIs changed: tell the server (its era decides how)."""
        if self.negotiated is not None and self.negotiated.era == "modern":
            self._start_listening()  # A stateless-era server learns them from a new listen stream.

    def _session_message(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method in _LIST_CHANGED and self._spawn is not None and not self.pooled:
            self._spawn(self._refresh_then_tell(msg))
        elif self._on_notification is not None:
            self._on_notification(self, msg)

    async def _refresh_then_tell(self, msg: dict[str, Any]) -> None:
        # Refresh first, so a client that lists again on the news sees the new list.
        await self.refresh_catalog()
        if self._on_notification is not None:
            self._on_notification(self, msg)

    def _start_listening(self) -> None:
        """Hold the server's own stream open for messages outside any request."""
        if self._listen is not None:
            self._listen.cancel()
            self._listen = None
        client, negotiated = self._client, self.negotiated
        if client is None or negotiated is None or self._spawn is None:
            return
        if negotiated.era == "handshake" and not isinstance(client.channel, HttpChannel):
            return  # stdio: everything already arrives on stdout.

        async def listen() -> None:
            self._listen = asyncio.current_task()
            try:
                await self._listen_once(client, negotiated)
            except ChannelClosed as exc:
                log.info("upstream stream closed", server=self.name, reason=str(exc))
            except (UpstreamError, UpstreamRpcError) as exc:
                log.info("upstream listen refused", server=self.name, reason=str(exc))

        self._spawn(listen())

    async def _listen_once(self, client: UpstreamClient, negotiated: Negotiated) -> None:
        await listen_once(self.name, client, negotiated, self.resource_subscriptions, self._spawn)

    async def _drop_client(self) -> None:
        if self._listen is not None:
            self._listen.cancel()
            self._listen = None
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


_LIST_CHANGED = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    }
)


def _describe(exc: BaseException, connect_timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer to the handshake within {connect_timeout:g}s"
    if isinstance(exc, UpstreamError):
        return exc.cause
    if isinstance(exc, UpstreamRpcError):
        return f"handshake failed: {exc.error.get('message')}"
    if isinstance(exc, UpstreamProtocolError | ChannelClosed | SessionExpired):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _quietly(start: Callable[[], Awaitable[Any]]) -> None:
    """A best-effort background call, bounded and silent. Takes a factory, so a job
    that never gets to run leaves no coroutine behind unawaited."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await start()
