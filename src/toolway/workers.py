"""`toolway serve --workers N`: N gateway processes on one port, and a parent that keeps them.

Layout:

- The **parent** binds the agent-facing port N times with ``SO_REUSEPORT`` (so the kernel
  spreads new connections evenly over the workers; port 0 works: the first socket picks the
  port, the others join it), one private loopback port per worker, and the admin port once.
  It forks the workers, hands each its sockets, prints the ready line once all of them are
  ready, and then only supervises: a worker that dies is started again (at most
  ``_RESPAWN_LIMIT`` times a minute), and SIGINT or SIGTERM stops them all — SIGTERM, then
  SIGKILL for a worker (and the process groups of its stdio servers) still alive after
  ``shutdown.drain_seconds`` + ``_STOP_GRACE`` seconds. Workers die with the parent
  (``PR_SET_PDEATHSIG``), so even a SIGKILLed parent leaves no worker behind.
- Each **worker** is a whole `Gateway`: its own upstream connections (stdio servers are
  spawned once per worker), catalog, sessions. Stateless-era (2026-07-28) requests are
  answered by whichever worker the connection landed on.
- **State that lives in one worker's memory is routed to it.** Handshake-era sessions
  (``Mcp-Session-Id``), legacy HTTP+SSE connections (``/messages?session_id=``) and parked
  stateless-era calls (``requestState``) get ids tagged with their worker's index
  (`toolway.sessions.owner`). A worker that receives a request for another worker's state
  forwards it, as raw HTTP, to that worker's private loopback port and streams the answer
  back (SSE included, with back-pressure; a client that hangs up closes the forwarded
  exchange too). If the owner is gone, the client gets the spec's answer for a lost
  session (404, or -32602 for a ``requestState``) and starts again; it is never answered
  as if its session did not matter.
- The **admin listener** (``/healthz``, ``/readyz``) runs in worker 0 only.
- Pagination cursors must verify on any worker: without ``cursor_secret`` the parent picks
  one random secret for all of them.

Every response from the agent port carries ``x-toolway-worker: <index>`` (the worker that
answered); a forwarded one also carries ``x-toolway-forwarded-by: <index>``. Log lines carry
``worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import os
import secrets
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict
from yarl import URL

from toolway.app import Gateway, StartupError
from toolway.auth.setup import AuthSetupError, check_listen
from toolway.config.loader import ConfigError
from toolway.config.model import GatewayConfig
from toolway.ingress.asgi import respond_json
from toolway.lifetime import listener, loop_factory
from toolway.observability import logging as tw_logging
from toolway.protocol.errors import InvalidParams, InvalidRequest, SessionNotFound, modern_status, to_error
from toolway.protocol.mrtr import STATE_PREFIX
from toolway.sessions import owner
from toolway.sessions.owner import MAX_WORKERS, owner_of

log = structlog.get_logger("toolway.workers")

WORKER_HEADER = b"x-toolway-worker"
FORWARDED_HEADER = b"x-toolway-forwarded-by"
_SESSION_HEADER = b"mcp-session-id"
_STATE_MARK = b'"' + STATE_PREFIX.encode() + b"w"  # a tagged requestState in a JSON body
# Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; content-length is recomputed.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)
# uvicorn writes its own date and server headers on the forwarding worker's response.
_DROP_RESPONSE = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"})
_CONNECT_TIMEOUT = 5.0  # seconds to reach a sibling worker's private port

_READY_TIMEOUT_EXTRA = 30.0  # beyond the slowest upstream's connect timeout
_STOP_GRACE = 15.0  # beyond drain_seconds: closing upstreams (stdio SIGTERM, then SIGKILL after 5 s)
_RESPAWN_LIMIT = 3  # deaths per worker per _RESPAWN_WINDOW before the parent gives up
_RESPAWN_WINDOW = 60.0
_POLL = 0.1  # the parent's supervision tick, seconds
_PR_SET_PDEATHSIG = 1

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


# --------------------------------------------------------------------------------------------
# In a worker: the agent-facing app that routes requests to the worker owning their state


def _tagging(send: Send, value: bytes) -> Send:
    async def tagged_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (WORKER_HEADER, value)]
        await send(message)

    return tagged_send


def _replay(messages: list[dict[str, Any]], receive: Receive) -> Receive:
    """A `receive` that first hands out messages already read, then the real ones."""
    pending = deque(messages)

    async def replay() -> Any:
        if pending:
            return pending.popleft()
        return await receive()

    return replay


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class WorkerTag:
    """The private listener's app: the gateway as is, answers tagged with this worker."""

    def __init__(self, app: Any, index: int) -> None:
        self._app = app
        self._tag = str(index).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        await self._app(scope, receive, _tagging(send, self._tag))


class WorkerRouter:
    """The agent port's app in a worker: local requests to the gateway, others to their owner.

    What decides the owner: the ``Mcp-Session-Id`` header, the ``session_id`` of a legacy
    ``/messages`` POST, or a tagged ``params.requestState`` in a POST body (looked for only
    when the body contains one, so ordinary stateless-era requests are not parsed twice).
    """

    def __init__(self, app: Any, index: int, peers: Mapping[int, int], *, max_body_bytes: int) -> None:
        self._app = app
        self._index = index
        self._tag = str(index).encode()
        self._peers = dict(peers)  # worker index -> its private port on 127.0.0.1
        self._max_body = max_body_bytes
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        target: int | None = None
        kind = ""
        for key, value in scope["headers"]:
            if key == _SESSION_HEADER:
                target, kind = owner_of(value.decode("latin-1")), "session"
                break
        if not kind and scope["path"].endswith("/messages"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            ids = query.get("session_id")
            if ids:
                target, kind = owner_of(ids[0]), "legacy"
        body: bytes | None = None
        if not kind and scope["method"] == "POST":
            messages, body = await self._peek(receive)
            receive = _replay(messages, receive)
            if body is not None and _STATE_MARK in body:
                target, kind = _state_owner(body), "state"
        if target is None or target == self._index or target not in self._peers:
            await self._app(scope, receive, _tagging(send, self._tag))
            return
        await self._forward(target, kind, scope, receive, send, body)

    async def _peek(self, receive: Receive) -> tuple[list[dict[str, Any]], bytes | None]:
        """The request body's messages as read, and the whole body (None if too large or cut off)."""
        messages: list[dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, None
            size += len(message.get("body", b""))
            if size > self._max_body:
                return messages, None  # the gateway answers 413
            if not message.get("more_body", False):
                break
        if len(messages) == 1:
            return messages, messages[0].get("body", b"")
        return messages, b"".join(m.get("body", b"") for m in messages)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            # No pool limit: every forwarded SSE stream holds a connection for its lifetime.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
            self._http = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._http

    async def _forward(
        self, target: int, kind: str, scope: Scope, receive: Receive, send: Send, body: bytes | None
    ) -> None:
        """Send the request to worker `target`'s private port and stream its answer back."""
        if body is None:
            body = await self._read_body(receive)
            if body is None:
                exc = InvalidRequest(f"Request body exceeds the gateway's limit of {self._max_body} bytes")
                await respond_json(send, 413, {"jsonrpc": "2.0", "id": None, "error": to_error(exc)})
                return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        url = URL(
            f"http://127.0.0.1:{self._peers[target]}{raw_path.decode('latin-1')}"
            + (f"?{query.decode('latin-1')}" if query else ""),
            encoded=True,
        )
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            if name not in _HOP_BY_HOP:
                headers.add(name, value.decode("latin-1"))
        headers[FORWARDED_HEADER.decode()] = str(self._index)
        # The client may hang up before the owner answers: that must reach the owner too
        # (in the stateless era a closed request is the cancellation).
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        request = asyncio.ensure_future(
            self._client().request(
                scope["method"], url, data=body or None, headers=headers, allow_redirects=False, compress=None
            )
        )
        try:
            done, _ = await asyncio.wait({watcher, request}, return_when=asyncio.FIRST_COMPLETED)
            if request not in done:
                request.cancel()
                with contextlib.suppress(BaseException):
                    await request
                return
            try:
                response = request.result()
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("cannot reach the worker that owns a request's state", owner=target, error=str(exc))
                await _owner_gone(send, kind, target)
                return
            await self._relay(response, watcher, send)
        finally:
            watcher.cancel()
            if not request.done():
                request.cancel()

    async def _relay(self, response: aiohttp.ClientResponse, watcher: asyncio.Future[None], send: Send) -> None:
        """Copy the owner's response to the client, chunk by chunk, until either side ends."""
        # The client hung up: close the forwarded exchange, so the owner sees it too. (A
        # cancelled watcher means this side finished; the connection goes back to the pool.)
        watcher.add_done_callback(lambda done: None if done.cancelled() else response.close())
        try:
            headers = [(k, v) for k, v in response.raw_headers if k.lower() not in _DROP_RESPONSE]
            headers.append((FORWARDED_HEADER, self._tag))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.release()


def _state_owner(body: bytes) -> int | None:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    params = message.get("params") if isinstance(message, dict) else None
    state = params.get("requestState") if isinstance(params, dict) else None
    if not isinstance(state, str) or not state.startswith(STATE_PREFIX):
        return None
    return owner_of(state[len(STATE_PREFIX) :])


async def _owner_gone(send: Send, kind: str, target: int) -> None:
    """The worker holding this state is not running: its state is lost, and the client is told so."""
    gone = f"the gateway worker that held it ({target}) is not running"
    if kind == "legacy":
        await respond_json(send, 404, {"error": f"unknown or closed session_id ({gone}): open GET /sse again"})
    elif kind == "state":
        error = to_error(InvalidParams(f"requestState is unknown or expired ({gone}): send the original request again"))
        await respond_json(send, modern_status(error), {"jsonrpc": "2.0", "id": None, "error": error})
    else:
        exc = SessionNotFound(f"Session not found ({gone})")
        await respond_json(send, exc.http_status, {"jsonrpc": "2.0", "id": None, "error": to_error(exc)})


# --------------------------------------------------------------------------------------------
# A worker's life


@dataclass
class _Slot:
    """One worker as the parent sees it."""

    index: int
    private_port: int
    public: socket.socket | None = None
    private: socket.socket | None = None
    admin: socket.socket | None = None
    pid: int | None = None
    ready: bool = False
    deaths: deque[float] = field(default_factory=deque)

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.public, self.private, self.admin) if s is not None]

    def release(self) -> None:
        """The parent's copies of the worker's sockets: closed once the worker has its own."""
        for sock in self.sockets():
            sock.close()
        self.public = self.private = self.admin = None


async def run_worker(
    config: GatewayConfig,
    index: int,
    sockets: tuple[socket.socket, socket.socket, socket.socket | None],
    peers: Mapping[int, int],
    on_ready: Callable[[], None],
) -> None:
    """One worker: a whole gateway on its share of the agent port and its private port, until SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    public, private, admin = sockets
    async with Gateway(config) as gateway:
        drain = config.shutdown.drain_seconds
        keepalive = config.streams.keepalive_seconds
        max_body = config.limits.max_body_bytes
        router = WorkerRouter(gateway.app, index, peers, max_body_bytes=max_body)
        served: list[tuple[Any, socket.socket]] = [
            (listener(router, drain, keepalive, max_body), public),
            (listener(WorkerTag(gateway.app, index), drain, keepalive, max_body), private),
        ]
        if admin is not None:
            served.append((listener(gateway.admin_app, 1.0), admin))
        tasks = [asyncio.create_task(lst._serve([sock])) for lst, sock in served]
        try:
            while not all(lst.started for lst, _ in served):
                if any(t.done() for t in tasks):
                    raise StartupError(f"worker {index}: a listener failed to start")
                await asyncio.sleep(0.01)
            # As in `toolway.lifetime.running`: keep start-up's long-lived objects out of full collections.
            gc.collect()
            gc.freeze()
            gateway.accepting = True
            on_ready()
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
        finally:
            gateway.accepting = False
            gateway.stop_streams()
            log.info("shutdown: stop accepting; draining in-flight calls", drain_seconds=drain)
            for lst, _ in served:
                lst.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await router.close()


def _die_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGTERM this process when its parent dies; False if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent


def _worker_process(
    config: GatewayConfig,
    slot: _Slot,
    peers: Mapping[int, int],
    ready_fd: int,
    parent: int,
) -> int:
    """The body of a forked worker. Returns its exit code."""
    if not _die_with_parent(parent):
        return 0
    assert slot.public is not None and slot.private is not None
    owner.set_worker(slot.index)
    structlog.contextvars.bind_contextvars(worker=slot.index)

    def ready() -> None:
        os.write(ready_fd, f"{slot.index} ready\n".encode())

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_worker(config, slot.index, (slot.public, slot.private, slot.admin), peers, ready))
    except (StartupError, ConfigError) as exc:  # ConfigError: a policy or secret file unusable
        message = " ".join(str(exc).split())
        os.write(ready_fd, f"{slot.index} error {message}\n".encode())
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# The parent


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Not inheritable (Python's default): a fork shares it with the worker, but an exec'd
    # stdio server must never hold a listening socket.
    sock.setblocking(False)
    return sock


def _shared_port(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port with SO_REUSEPORT; the kernel balances connections."""
    if port != 0:
        # SO_REUSEPORT would quietly share a port that another Toolway (same user) already
        # listens on: refuse a port that is in use, as a single process would.
        _listening_socket(host, port, reuse_port=False).close()
    first = _listening_socket(host, port, reuse_port=True)
    sockets = [first]
    try:
        actual = first.getsockname()[1]
        sockets += [_listening_socket(host, actual, reuse_port=True) for _ in range(count - 1)]
    except StartupError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _url(sock: socket.socket, path: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as f:
                    for child in f.read().split():
                        found.append(int(child))
                        todo.append(int(child))
    return found


class Supervisor:
    """The parent process of `toolway serve --workers N`."""

    def __init__(self, config: GatewayConfig, workers: int) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        if config.cursor_secret is None:
            # Cursors minted by one worker must verify on another.
            config = config.model_copy(update={"cursor_secret": secrets.token_urlsafe(32)})
        self.config = config
        self.count = workers
        self.slots: list[_Slot] = []
        self.url = ""
        self.port = 0
        self.admin_url: str | None = None
        self.admin_port: int | None = None
        self._pid = os.getpid()
        self._ready_r, self._ready_w = os.pipe()
        self._buffer = b""
        self._mask: set[signal.Signals] = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
        self._old_mask: set[int | signal.Signals] = set()
        self._failure: str | None = None

    # -- sockets

    def bind(self) -> None:
        """Bind every port now, so a port in use is reported before anything starts."""
        listen, admin = self.config.listen, self.config.admin
        public = _shared_port(listen.host, listen.port, self.count)
        try:
            private = [_listening_socket("127.0.0.1", 0, reuse_port=False) for _ in range(self.count)]
            admin_sock = _listening_socket(admin.host, admin.port, reuse_port=False) if admin.enabled else None
        except StartupError:
            for sock in public:
                sock.close()
            raise
        self.port = public[0].getsockname()[1]
        self.url = _url(public[0], "/mcp")
        if admin_sock is not None:
            self.admin_port = admin_sock.getsockname()[1]
            self.admin_url = _url(admin_sock, "")
        for index in range(self.count):
            slot = _Slot(index, private[index].getsockname()[1], public[index], private[index])
            if index == 0:
                slot.admin = admin_sock
            self.slots.append(slot)

    def _rebind(self, slot: _Slot) -> None:
        """Fresh sockets for a worker started again: same public port, same private port."""
        listen, admin = self.config.listen, self.config.admin
        slot.public = _listening_socket(listen.host, self.port, reuse_port=True)
        slot.private = _listening_socket("127.0.0.1", slot.private_port, reuse_port=False)
        if slot.index == 0 and self.admin_port is not None:
            slot.admin = _listening_socket(admin.host, self.admin_port, reuse_port=False)

    @property
    def peers(self) -> dict[int, int]:
        return {slot.index: slot.private_port for slot in self.slots}

    # -- processes

    def _fork(self, slot: _Slot) -> None:
        gc.collect()  # less for the children to copy on write
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
                os.close(self._ready_r)
                for other in self.slots:
                    if other is not slot:
                        for sock in other.sockets():
                            sock.close()
                code = _worker_process(self.config, slot, self.peers, self._ready_w, self._pid)
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        slot.pid, slot.ready = pid, False
        slot.release()

    def _read_ready(self, timeout: float) -> None:
        readable, _, _ = select.select([self._ready_r], [], [], timeout)
        if not readable:
            return
        self._buffer += os.read(self._ready_r, 65536)
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            index_text, _, rest = line.decode(errors="replace").partition(" ")
            if not index_text.isdigit() or int(index_text) >= self.count:
                continue
            slot = self.slots[int(index_text)]
            if rest == "ready":
                slot.ready = True
                log.info("worker ready", worker=slot.index, pid=slot.pid)
            elif rest.startswith("error "):
                self._failure = self._failure or rest.removeprefix("error ")

    def _reap(self) -> list[_Slot]:
        """Collect exited workers; the slots whose worker died."""
        died: list[_Slot] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for slot in self.slots:
                if slot.pid == pid:
                    slot.pid, slot.ready = None, False
                    code = os.waitstatus_to_exitcode(status)
                    log.info("worker exited", worker=slot.index, pid=pid, code=code)
                    died.append(slot)
        return died

    def _stop_requested(self) -> bool:
        stop = False
        while (info := signal.sigtimedwait(self._mask, 0)) is not None:
            if info.si_signo in (signal.SIGINT, signal.SIGTERM):
                stop = True
        return stop

    def _respawn(self, slot: _Slot) -> bool:
        now = time.monotonic()
        slot.deaths.append(now)
        while slot.deaths and now - slot.deaths[0] > _RESPAWN_WINDOW:
            slot.deaths.popleft()
        if len(slot.deaths) > _RESPAWN_LIMIT:
            self._failure = f"worker {slot.index} died {len(slot.deaths)} times within {_RESPAWN_WINDOW:g}s"
            return False
        try:
            self._rebind(slot)
        except StartupError as exc:
            self._failure = f"cannot start worker {slot.index} again: {exc}"
            return False
        log.warning("starting a worker again", worker=slot.index)
        self._fork(slot)
        return True

    def _stop_all(self) -> None:
        """SIGTERM every worker; SIGKILL (with its stdio servers' process groups) whatever outlives the grace."""
        live = [slot for slot in self.slots if slot.pid is not None]
        for slot in live:
            assert slot.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown.drain_seconds + _STOP_GRACE
        while any(slot.pid is not None for slot in self.slots) and time.monotonic() < deadline:
            self._reap()
            if any(slot.pid is not None for slot in self.slots):
                self._read_ready(_POLL)
        for slot in self.slots:
            if slot.pid is None:
                continue
            log.warning("worker did not stop in time; killing it", worker=slot.index, pid=slot.pid)
            for pid in [*_descendants(slot.pid), slot.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        while any(slot.pid is not None for slot in self.slots):
            self._reap()
            time.sleep(0.01)

    def run(self, on_ready: Callable[[Supervisor], None] | None = None) -> int:
        """Fork the workers, wait until all are ready, supervise until SIGINT/SIGTERM. The exit code."""
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._mask)
        try:
            for slot in self.slots:
                self._fork(slot)
            code = self._start()
            if code is None:
                if on_ready is not None:
                    on_ready(self)
                code = self._supervise()
            self._stop_all()
            if self._failure is not None:
                print(f"toolway: {self._failure}", file=sys.stderr, flush=True)
            return code
        finally:
            for slot in self.slots:
                slot.release()
            self._stop_requested()  # swallow what arrived while blocked
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            os.close(self._ready_r)
            os.close(self._ready_w)

    def _start(self) -> int | None:
        """Wait for every worker's ready line: None when all are ready, else the exit code."""
        connect = max((s.timeouts.connect for s in self.config.servers), default=0.0)
        deadline = time.monotonic() + connect + _READY_TIMEOUT_EXTRA
        while not all(slot.ready for slot in self.slots):
            self._read_ready(_POLL)
            if self._failure is not None:
                return 1
            if self._stop_requested():
                return 0
            if self._reap():
                self._read_ready(_POLL)  # its reason may still be in the pipe
                self._failure = self._failure or "a worker exited while starting"
                return 1
            if time.monotonic() > deadline:
                self._failure = "the workers were not ready in time"
                return 1
        return None

    def _supervise(self) -> int:
        while True:
            self._read_ready(_POLL)
            if self._stop_requested():
                log.info("shutdown: signal received; stopping the workers", workers=self.count)
                return 0
            for slot in self._reap():
                log.error("a worker died", worker=slot.index)
                if not self._respawn(slot):
                    return 1


def serve_workers(config: GatewayConfig, workers: int) -> int:
    """`toolway serve --workers N` (N > 1). Returns the process exit code."""
    tw_logging.configure(config.logging.level, config.logging.format)
    supervisor = Supervisor(config, workers)
    try:
        check_listen(config)
        supervisor.bind()
    except (StartupError, AuthSetupError) as exc:
        print(f"toolway: {exc}", file=sys.stderr)
        return 1

    def announce(sup: Supervisor) -> None:
        log.info("gateway ready", url=sup.url, admin=sup.admin_url, servers=len(config.servers), workers=sup.count)
        print(f"Toolway is ready: point your MCP client at {sup.url}", flush=True)

    return supervisor.run(announce)
