"""The gateway process's lifetime: listeners bound, signals handled, `serve` and `stdio`.

Start-up: the ports are bound first (a port in use fails before anything starts), then the
`Gateway` (store, upstreams), then the listeners. Shutdown, in named phases: stop accepting ->
drain in-flight calls (bounded by `shutdown.drain_seconds`) -> the gateway closes its
upstreams and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
import uvicorn

from toolway.app import Endpoints, Gateway, StartupError
from toolway.auth.setup import AuthSetupError, check_listen
from toolway.clock import Clock, WallClock
from toolway.config.loader import ConfigError
from toolway.config.model import GatewayConfig
from toolway.ingress.connection import MessageConnection
from toolway.observability import logging as tw_logging
from toolway.state.backend import StateBackend

log = structlog.get_logger("toolway")


class _Listener(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway handles signals once for all listeners."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: no Nagle delay on small JSON-RPC answers.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket, path: str, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{path}"


def listener(
    app: Any,
    drain: float,
    keepalive: float = 20.0,
    max_message: int = 16 * 1024 * 1024,
    options: dict[str, Any] | None = None,
) -> _Listener:
    """A uvicorn server for `app`: lean (no lifespan, no access log), WebSocket pings every
    `keepalive` seconds, frames up to `max_message`, and `drain` seconds of graceful shutdown.
    Serve it on an already-bound socket (`_serve([sock])`) so port 0 is read back without a race."""
    settings: dict[str, Any] = {
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_ping_interval": keepalive,  # WebSocket keep-alive: pings, and a dead peer is noticed
        "ws_ping_timeout": keepalive,
        "ws_max_size": max_message,  # larger frames close with 1009
        "timeout_graceful_shutdown": max(1, round(drain)),
    }
    # TLS termination (auth.mtls): ssl_* and the protocols that hand the app the client certificate.
    settings.update(options or {})
    config = uvicorn.Config(app, **settings)
    return _Listener(config)


@contextlib.asynccontextmanager
async def running(
    config: GatewayConfig,
    *,
    clock: Clock | None = None,
    wall_clock: WallClock | None = None,
    state_backend: StateBackend | None = None,
) -> AsyncIterator[tuple[Gateway, Endpoints]]:
    """Start the gateway and its listeners; on exit, shut down in phases.

    Raises:
        StartupError: a port cannot be bound or the store cannot be opened.
    """
    try:
        check_listen(config)
    except AuthSetupError as exc:
        raise StartupError(str(exc)) from None
    sockets = [_bind(config.listen.host, config.listen.port)]
    if config.admin.enabled:
        try:
            sockets.append(_bind(config.admin.host, config.admin.port))
        except StartupError:
            sockets[0].close()
            raise
    async with Gateway(config, clock=clock, wall_clock=wall_clock, state_backend=state_backend) as gateway:
        drain = config.shutdown.drain_seconds
        tls = gateway.auth.listener_options()
        listeners = [listener(gateway.app, drain, config.streams.keepalive_seconds, config.limits.max_body_bytes, tls)]
        if config.admin.enabled:
            listeners.append(listener(gateway.admin_app, 1.0))
        tasks = [asyncio.create_task(lst._serve([sock])) for lst, sock in zip(listeners, sockets, strict=True)]
        while not all(lst.started for lst in listeners):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        endpoints = Endpoints(
            _url(sockets[0], "/mcp", "https" if tls else "http"), _url(sockets[1], "") if len(sockets) > 1 else None
        )
        gateway.agent_base_url = endpoints.url.removesuffix("/mcp")
        # Start-up leaves ~90k long-lived objects (modules, config, catalogs). Moving them out
        # of the collector's reach turns 50-80 ms full collections into a few ms (bench/README.md).
        gc.collect()
        gc.freeze()
        gateway.accepting = True
        try:
            yield gateway, endpoints
        finally:
            gateway.accepting = False
            gateway.stop_streams()
            log.info("shutdown: stop accepting; draining in-flight calls", drain_seconds=drain)
            for lst in listeners:
                lst.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)


async def run(config: GatewayConfig, *, on_ready: Callable[[Endpoints], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(config) as (_, endpoints):
        log.info("gateway ready", url=endpoints.url, admin=endpoints.admin_url, servers=len(config.servers))
        if on_ready is not None:
            on_ready(endpoints)
        await stop.wait()
        log.info("shutdown: signal received")


def serve(config: GatewayConfig) -> int:
    """The `toolway serve` command's body. Returns the process exit code."""
    tw_logging.configure(config.logging.level, config.logging.format)

    def announce(endpoints: Endpoints) -> None:
        print(f"Toolway is ready: point your MCP client at {endpoints.url}", flush=True)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run(config, on_ready=announce))
    except StartupError as exc:
        print(f"toolway: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # a policy that does not compile, a secret file that cannot be read
        print(f"toolway: {exc}", file=sys.stderr)
        return 2
    return 0


async def run_stdio(config: GatewayConfig, server: str | None) -> None:
    """Serve one client on stdin/stdout until stdin closes or a signal arrives. Logs go to stderr."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader(limit=config.limits.max_body_bytes + 1)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    async with Gateway(config) as gateway:
        gateway.accepting = True
        conn = MessageConnection(
            gateway.layer,
            gateway.spawn,
            path="/stdio" if server is None else f"/servers/{server}/stdio",
            scope=server,
            transport="stdio",
            client="stdio",
            identity=gateway.auth.stdio_identity,  # the local operator, when authentication is on
            max_message_bytes=config.limits.max_body_bytes,
            max_queued=config.streams.max_queued_messages,
        )

        async def write(body: bytes) -> None:
            writer.write(body + b"\n")
            await writer.drain()

        async def read() -> None:
            while line := await reader.readline():
                if line.strip():
                    await conn.receive(line.strip())

        tasks = [asyncio.ensure_future(t) for t in (conn.run_writer(write), read(), stop.wait(), conn.closed.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.close("stdin closed")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gateway.accepting = False
    writer.close()


def serve_stdio(config: GatewayConfig, server: str | None = None) -> int:
    """The `toolway stdio` command's body. Returns the process exit code."""
    tw_logging.configure(config.logging.level, config.logging.format)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_stdio(config, server))
    except StartupError as exc:
        print(f"toolway: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"toolway: {exc}", file=sys.stderr)
        return 2
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (the faster one), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
