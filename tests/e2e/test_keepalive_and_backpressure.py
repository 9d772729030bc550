"""Long-lived streams survive proxies that drop idle connections, and slow clients cannot grow memory.

A loopback TCP proxy that closes any connection idle for `IDLE` seconds stands in for a
load balancer; keep-alives every `KEEPALIVE` seconds must keep an SSE client's line open.
A client that stops reading is disconnected once its bounded queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from mcp import ClientSession
from mcp.client.sse import sse_client
from websockets.client import ClientProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from toolway.testing import RunningGateway, running_gateway, stdio_upstream_command

IDLE = 0.6
KEEPALIVE = 0.15


class IdleDroppingProxy:
    """Forwards 127.0.0.1:port to a target; closes a connection after IDLE seconds without bytes."""

    def __init__(self, target_port: int, idle: float) -> None:
        self._target = target_port
        self._idle = idle
        self.dropped = asyncio.Event()
        self.streams_dropped = 0  # dropped connections that were carrying an SSE stream
        self.chunks_from_server = 0
        self.server: asyncio.Server | None = None
        self.progress = asyncio.Condition()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target)
        activity = asyncio.Event()
        streaming = False

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_server: bool) -> None:
            nonlocal streaming
            while data := await src.read(65536):
                activity.set()
                streaming = streaming or (from_server and b"text/event-stream" in data)
                if from_server:
                    async with self.progress:
                        self.chunks_from_server += 1
                        self.progress.notify_all()
                dst.write(data)
                await dst.drain()

        pipes = [
            asyncio.ensure_future(pipe(client_r, server_w, False)),
            asyncio.ensure_future(pipe(server_r, client_w, True)),
        ]
        try:
            while not all(p.done() for p in pipes):
                activity.clear()
                try:
                    async with asyncio.timeout(self._idle):
                        await activity.wait()
                except TimeoutError:
                    self.dropped.set()  # idle too long: cut it, like a load balancer would
                    self.streams_dropped += streaming
                    break
        finally:
            for p in pipes:
                p.cancel()
            for w in (client_w, server_w):
                w.close()

    async def wait_chunks(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self.progress:
            await self.progress.wait_for(lambda: self.chunks_from_server >= count)


@contextlib.asynccontextmanager
async def small_gateway(tmp_path: Path, **streams: float) -> AsyncIterator[RunningGateway]:
    servers = [{"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")}]
    async with running_gateway(servers=servers, store_dir=tmp_path, streams=streams) as gw:
        yield gw


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_keepalives_hold_an_idle_sse_connection_open(tmp_path: Path) -> None:
    async with small_gateway(tmp_path, keepalive_seconds=KEEPALIVE) as gw:
        proxy = IdleDroppingProxy(port_of(gw.url), IDLE)
        async with proxy as port:
            url = f"http://127.0.0.1:{port}/sse"
            async with sse_client(url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                start = proxy.chunks_from_server
                # Idle on the client's side for several keep-alive intervals, far past IDLE in total.
                await proxy.wait_chunks(start + int(3 * IDLE / KEEPALIVE))
                assert proxy.streams_dropped == 0  # (an idle pooled POST connection may go; that's fine)
                who = await session.call_tool("gamma__whoami", {})
                assert who.content[0].text == "gamma"  # type: ignore[union-attr]


async def test_without_keepalives_the_proxy_drops_the_line(tmp_path: Path) -> None:
    """The control: the same proxy does cut a quiet stream."""
    async with small_gateway(tmp_path, keepalive_seconds=60) as gw:
        proxy = IdleDroppingProxy(port_of(gw.url), IDLE)
        async with proxy as port:
            with contextlib.suppress(Exception):
                async with sse_client(f"http://127.0.0.1:{port}/sse") as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        async with asyncio.timeout(10):
                            while not proxy.streams_dropped:
                                await proxy.dropped.wait()
                                proxy.dropped.clear()
            assert proxy.streams_dropped >= 1


async def test_a_client_that_stops_reading_is_disconnected(tmp_path: Path) -> None:
    """A WebSocket client that sends and never reads: the gateway's queue for it is bounded."""
    async with small_gateway(tmp_path, max_queued_messages=8) as gw:
        ws_url = gw.url.replace("http://", "ws://").removesuffix("/mcp") + "/ws"
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for us
        sock.connect(("127.0.0.1", port_of(gw.url)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        client = ClientProtocol(parse_uri(ws_url), subprotocols=[Subprotocol("mcp")])
        client.send_request(client.connect())
        writer.write(b"".join(client.data_to_send()))
        await writer.drain()
        async with asyncio.timeout(10):
            client.receive_data(await reader.readuntil(b"\r\n\r\n"))  # the handshake answer; never read again
        assert client.handshake_exc is None, client.handshake_exc
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        text = "x" * 1_000_000
        with structlog.testing.capture_logs() as logs:
            for i in range(40):  # ~40 MB of answers, far more than any socket buffers hold
                params = {"name": "gamma__echo", "arguments": {"text": text}, "_meta": meta}
                client.send_text(
                    json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}).encode()
                )
                writer.write(b"".join(client.data_to_send()))
                await writer.drain()
                if gw.gateway.app.websocket.open_connections == 0:
                    break
            async with asyncio.timeout(20):
                while gw.gateway.app.websocket.open_connections:  # noqa: ASYNC110 - bounded poll
                    await asyncio.sleep(0.02)
        writer.transport.abort()
        assert any(entry["event"] == "disconnecting a client that stopped reading" for entry in logs)
