"""What one hop through Toolway costs: the same MCP calls straight to a server and through the gateway.

Starts lean upstreams (``bench/lean_upstream.py``) and ``toolway serve`` in front of them, all as
child processes on 127.0.0.1, then drives them from this process with aiohttp, first straight to
the upstream ("direct") and then through the gateway, back to back in the same run. Compare the
paths by the ratios it prints, not by the absolute numbers.

    .venv/bin/python bench/hop.py [--quick] [--calls N] [--concurrency 1,16,64] [--era both] [--only S,...]

Scenarios (``--only`` picks some): ``call`` (tools/call, both eras, JSON and SSE upstream
answers), ``stdio`` (the lean upstream over stdio), ``list`` (tools/list over 10 upstreams x 50
tools), ``sessions`` (idle RSS, and 10,000 idle handshake-era sessions), ``workers`` (``toolway
serve --workers 2`` against one worker). Every scenario ends with its table; a summary of the
issue's targets comes last.

Nothing here asserts a threshold; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

HERE = Path(__file__).resolve().parent
LEAN_UPSTREAM = HERE / "lean_upstream.py"
TOOLWAY = Path(sys.executable).parent / "toolway"

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
CLIENT_INFO = {"name": "toolway-hop-bench", "version": "1.0"}
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
}
BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
ECHO_TEXT = "hello from the hop bench"

SCENARIOS = ("call", "stdio", "list", "sessions", "workers")
MAX_CALLS = 100_000
MAX_CONCURRENCY = 1024
WARMUP_CALLS = 200
LIST_WARMUP = 50
LIST_UPSTREAMS = 10
LIST_TOOLS_EACH = 50
SESSIONS = 10_000  # idle handshake-era sessions; the gateway's default limits.max_sessions
SESSION_CONCURRENCY = 32
WORKERS = 2
WORKERS_CONCURRENCY = 64
STARTUP_TIMEOUT = 30.0  # seconds to wait for a child's ready line
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP exchange
STOP_GRACE = 5.0  # SIGTERM, then SIGKILL after this long
SETTLE_SECONDS = 1.0  # after start-up, before an idle RSS reading
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The targets (one gateway worker, loopback), checked in the summary.
TARGET_CPU_MODERN = 0.5  # ms of gateway CPU per tools/call
TARGET_CPU_HANDSHAKE = 0.7
TARGET_ADDED_P50 = 1.0  # ms at concurrency 1
TARGET_ADDED_P99 = 3.0
TARGET_RATE_64 = 2000.0  # calls/s at concurrency 64
TARGET_LIST_P50 = 2.0  # ms added by a 500-tool list
TARGET_IDLE_RSS = 80.0  # MB
TARGET_SESSIONS_RSS = 100.0  # MB added by 10,000 idle sessions
TARGET_WORKERS = 1.7  # throughput of 2 workers / 1 worker


# --------------------------------------------------------------------------------------------
# Processes


def _proc_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after "pid (comm)": state is index 0, utime 11, stime 12 (proc(5) fields 14 and 15).
    return stat.rsplit(")", 1)[1].split()


def cpu_ms(pids: list[int]) -> float:
    """User + system CPU these processes have used so far, in milliseconds (gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _proc_stat(pid)
            total += int(fields[11]) + int(fields[12])
    return total * 1000.0 / CLK_TCK


def rss_mb(pids: list[int]) -> float:
    """The memory of these processes in MB: one process's resident set size (VmRSS); for several (a
    gateway and its workers), the sum of their proportional set sizes (Pss), so that pages the
    workers share after the fork are counted once, not once per worker."""
    if len(pids) == 1:
        return _status_kb(pids[0], "/proc/{}/status", "VmRSS:") / 1024.0
    return sum(_status_kb(pid, "/proc/{}/smaps_rollup", "Pss:") for pid in pids) / 1024.0


def _status_kb(pid: int, pattern: str, key: str) -> int:
    with contextlib.suppress(OSError), open(pattern.format(pid), encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(p) for p in f.read().split()]
    return found


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    stderr_path: Path
    drain: asyncio.Task[None] | None = None
    workers: list[int] = field(default_factory=list)  # `toolway serve --workers N`: the worker pids

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The processes that are this child's own cost: itself and its workers."""
        return [self.pid, *self.workers]

    def stderr_tail(self, lines: int = 20) -> str:
        return _tail(self.stderr_path, lines)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _open_log(path: Path) -> Any:
    return open(path, "ab")  # appended: later sections restart names used before


def _child_env() -> dict[str, str]:
    # TOOLWAY_* variables would override the bench's config: keep the run reproducible.
    return {k: v for k, v in os.environ.items() if not k.startswith("TOOLWAY_")}


async def _spawn(name: str, argv: list[str], workdir: Path, *, stdin: int | None) -> Child:
    stderr_path = workdir / f"{name}.stderr.log"
    stderr = _open_log(stderr_path)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=workdir,
            env=_child_env(),
            limit=64 * 1024 * 1024,
        )
    finally:
        stderr.close()  # the child has its own copy
    return Child(name, process, stderr_path)


async def _start(name: str, argv: list[str], ready: Callable[[str], str | None], workdir: Path) -> tuple[Child, str]:
    """Start a child and read its stdout until `ready` recognises a line (at most STARTUP_TIMEOUT s)."""
    child = await _spawn(name, argv, workdir, stdin=asyncio.subprocess.DEVNULL)
    process = child.process
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{name} exited (status {await process.wait()}) before it was ready")
                text = line.decode(errors="replace").strip()
                seen.append(text)
                value = ready(text)
                if value is not None:
                    break
    except BaseException as exc:
        await _stop(child)
        detail = "\n".join(["stdout:", *seen[-10:], "stderr:", child.stderr_tail()])
        if isinstance(exc, TimeoutError):
            raise RuntimeError(f"{name} was not ready within {STARTUP_TIMEOUT:g}s\n{detail}") from None
        if isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc}\n{detail}") from None
        raise
    # It must never block on a full stdout pipe.
    child.drain = asyncio.create_task(_discard(process.stdout))
    return child, value


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _stop(child: Child) -> None:
    """SIGTERM, SIGKILL after STOP_GRACE seconds; always reaped."""
    process = child.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE + (10.0 if child.workers else 0.0))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if child.drain is not None:
        child.drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await child.drain


def _ready_port(line: str) -> str | None:
    word, _, rest = line.partition(" ")
    return rest if word == "READY" and rest.isdigit() else None


_GATEWAY_READY = "Toolway is ready: point your MCP client at "


def _ready_url(line: str) -> str | None:
    return line[len(_GATEWAY_READY) :].strip() if line.startswith(_GATEWAY_READY) else None


def _lean_argv(*, tools: int = 0, handshake_only: bool = False, sse: bool = False, stdio: bool = False) -> list[str]:
    argv = [sys.executable, str(LEAN_UPSTREAM)]
    if tools:
        argv += ["--tools", str(tools)]
    if handshake_only:
        argv.append("--handshake-only")
    if sse:
        argv.append("--sse")
    if stdio:
        argv.append("--stdio")
    return argv


@contextlib.asynccontextmanager
async def upstream(
    name: str, workdir: Path, *, tools: int = 0, handshake_only: bool = False, sse: bool = False
) -> AsyncIterator[tuple[Child, str]]:
    """A lean HTTP upstream for the block; yields it and its /mcp URL."""
    argv = _lean_argv(tools=tools, handshake_only=handshake_only, sse=sse)
    child, port = await _start(name, argv, _ready_port, workdir)
    try:
        yield child, f"http://127.0.0.1:{port}/mcp"
    finally:
        await _stop(child)


def http_server(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "transport": "streamable-http", "url": url, "timeouts": {"connect": 10, "call": 30}}


def stdio_server(name: str, *, handshake_only: bool) -> dict[str, Any]:
    command = _lean_argv(handshake_only=handshake_only, stdio=True)
    return {"name": name, "transport": "stdio", "command": command, "timeouts": {"connect": 10, "call": 30}}


# `--set key.path=value`: changes to every gateway's config, to see what a feature costs.
GATEWAY_OVERRIDES: dict[str, Any] = {}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _write_config(workdir: Path, servers: list[dict[str, Any]]) -> Path:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"enabled": False},
        "store": f"sqlite:///{workdir / 'toolway.db'}",
        "servers": servers,
        # The access log is at info: at warning the gateway writes nothing per call.
        "logging": {"level": "warning", "format": "json"},
        "shutdown": {"drain_seconds": 1},
    }
    config = _merge(config, GATEWAY_OVERRIDES)
    path = workdir / "toolway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def gateway(
    workdir: Path, servers: list[dict[str, Any]], *, workers: int = 1
) -> AsyncIterator[tuple[Child, str]]:
    """`toolway serve` in front of `servers` for the block; yields it and its /mcp URL."""
    config = _write_config(workdir, servers)
    argv = [str(TOOLWAY), "serve", "--config", str(config)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    child, url = await _start("gateway" if workers == 1 else f"gateway-{workers}w", argv, _ready_url, workdir)
    if workers > 1:
        child.workers = children(child.pid)
    try:
        yield child, url
    finally:
        await _stop(child)


async def settled_rss(pids: list[int]) -> float:
    await asyncio.sleep(SETTLE_SECONDS)
    return rss_mb(pids)


# --------------------------------------------------------------------------------------------
# MCP as a client: over HTTP, and over a stdio child's pipes


class CallFailed(Exception):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]


def _sse_data(raw: bytes) -> bytes:
    """The last `data:` of an SSE body: the JSON-RPC response that ends the stream."""
    last = b""
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            last = line[5:].strip()
    return last


def _result(raw: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CallFailed(f"not JSON: {raw[:300]!r}") from None
    result = message.get("result") if isinstance(message, dict) else None
    if not isinstance(result, dict):
        raise CallFailed(f"JSON-RPC error or no result: {raw[:300]!r}")
    return result


@dataclass
class Endpoint:
    """One MCP endpoint over HTTP as this client speaks to it, in one era."""

    url: str
    era: str  # "modern" or "handshake"
    http: aiohttp.ClientSession
    session_id: str | None = None
    answered_by: dict[str, int] = field(default_factory=dict)  # x-toolway-worker -> responses
    forwarded: int = 0  # responses with x-toolway-forwarded-by: passed on to the worker owning the session
    _ids: int = 0

    @classmethod
    async def open(cls, url: str, era: str, http: aiohttp.ClientSession) -> Endpoint:
        endpoint = cls(url, era, http)
        if era == "handshake":
            await endpoint.initialize()
        return endpoint

    async def initialize(self) -> None:
        params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": CLIENT_INFO}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
        async with self.http.post(self.url, data=body, headers=BASE_HEADERS) as resp:
            raw = await resp.read()
            session_id = resp.headers.get("Mcp-Session-Id")
            if resp.status != 200 or not session_id:
                raise CallFailed(f"initialize at {self.url}: HTTP {resp.status} {raw[:300]!r}")
        self.session_id = session_id
        note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        async with self.http.post(self.url, data=note, headers=self._headers(None, None)) as resp:
            await resp.read()
            if resp.status != 202:
                raise CallFailed(f"notifications/initialized at {self.url}: HTTP {resp.status}")

    def _headers(self, method: str | None, name: str | None) -> dict[str, str]:
        if self.era == "handshake":
            return {
                **BASE_HEADERS,
                "MCP-Protocol-Version": HANDSHAKE,
                "Mcp-Session-Id": self.session_id or "",
            }
        headers = {**BASE_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": method or ""}
        if name is not None:
            headers["Mcp-Name"] = name
        return headers

    def prepare(self, method: str, params: dict[str, Any], name: str | None = None) -> Request:
        """A request whose headers and params are built once and reused for every call."""
        if self.era == "modern":
            params = {**params, "_meta": META}
        return Request(method, params, self._headers(method, name))

    async def send(self, request: Request) -> dict[str, Any]:
        """POST one request; its result, or CallFailed (non-200, JSON-RPC error, bad body)."""
        self._ids += 1
        body = orjson.dumps({"jsonrpc": "2.0", "id": self._ids, "method": request.method, "params": request.params})
        async with self.http.post(self.url, data=body, headers=request.headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise CallFailed(f"HTTP {resp.status}: {raw[:300]!r}")
            if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                raw = _sse_data(raw)
            worker = resp.headers.get("x-toolway-worker")
            if worker is not None:
                self.answered_by[worker] = self.answered_by.get(worker, 0) + 1
                if "x-toolway-forwarded-by" in resp.headers:
                    self.forwarded += 1
        return _result(raw)


class StdioEndpoint:
    """A lean upstream over its stdin/stdout, spoken to directly: lines out, answers matched by id."""

    def __init__(self, child: Child, era: str) -> None:
        self.child = child
        self.era = era
        self._ids = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, child: Child, era: str) -> StdioEndpoint:
        endpoint = cls(child, era)
        if era == "handshake":
            params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": CLIENT_INFO}
            await endpoint.send(Request("initialize", params, {}))
            await endpoint._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return endpoint

    async def _read(self) -> None:
        stdout = self.child.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            answer_id = orjson.loads(line).get("id")
            future = self._pending.pop(answer_id, None)
            if future is not None and not future.done():
                future.set_result(line)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CallFailed("the stdio upstream closed its stdout"))

    async def _write(self, message: dict[str, Any]) -> None:
        stdin = self.child.process.stdin
        assert stdin is not None
        stdin.write(orjson.dumps(message) + b"\n")
        await stdin.drain()

    def prepare(self, method: str, params: dict[str, Any], name: str | None = None) -> Request:
        if self.era == "modern":
            params = {**params, "_meta": META}
        return Request(method, params, {})

    async def send(self, request: Request) -> dict[str, Any]:
        self._ids += 1
        msg_id = self._ids
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._write({"jsonrpc": "2.0", "id": msg_id, "method": request.method, "params": request.params})
        async with asyncio.timeout(REQUEST_TIMEOUT):
            raw = await future
        return _result(raw)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def stdio_upstream(workdir: Path, *, handshake_only: bool) -> AsyncIterator[Child]:
    """The lean upstream over stdio, as this process's own child."""
    argv = _lean_argv(handshake_only=handshake_only, stdio=True)
    child = await _spawn("lean-stdio", argv, workdir, stdin=asyncio.subprocess.PIPE)
    try:
        yield child
    finally:
        stdin = child.process.stdin
        if stdin is not None:
            stdin.close()  # end of input: it exits by itself
        await _stop(child)


def echo_op(endpoint: Any, tool: str) -> Callable[[], Awaitable[None]]:
    request = endpoint.prepare("tools/call", {"name": tool, "arguments": {"text": ECHO_TEXT}}, tool)

    async def op() -> None:
        result = await endpoint.send(request)
        content = result.get("content")
        if result.get("isError") or not content or content[0].get("text") != ECHO_TEXT:
            raise CallFailed(f"tools/call did not echo: {str(result)[:300]}")

    return op


def list_op(endpoints: list[Endpoint], expect: int) -> Callable[[], Awaitable[None]]:
    """Every page of tools/list from each endpoint in turn; fails unless `expect` tools came back."""

    async def op() -> None:
        count = 0
        for endpoint in endpoints:
            cursor: str | None = None
            while True:
                request = endpoint.prepare("tools/list", {"cursor": cursor} if cursor else {})
                result = await endpoint.send(request)
                count += len(result.get("tools") or ())
                cursor = result.get("nextCursor")
                if not cursor:
                    break
        if count != expect:
            raise CallFailed(f"tools/list returned {count} tools, expected {expect}")

    return op


def new_http(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class Load:
    calls: int
    wall_s: float
    latencies_ms: list[float]
    errors: int
    first_error: str | None
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process group name -> CPU used during the run

    @property
    def rate(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def cpu_per_call(self, name: str) -> float | None:
        spent = self.cpu_ms.get(name)
        return None if spent is None else spent / self.calls


async def drive(op: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> Load:
    """Run `op` `calls` times from `concurrency` workers; time each one."""
    latencies = [0.0] * calls
    errors = 0
    first_error: str | None = None
    issued = 0

    async def worker() -> None:
        nonlocal issued, errors, first_error
        clock = time.perf_counter
        while issued < calls:
            index = issued
            issued += 1
            start = clock()
            try:
                await op()
            except (CallFailed, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors += 1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"
            latencies[index] = (clock() - start) * 1000.0

    start = time.perf_counter()
    # Bounded even if every request stalled to its own timeout one after another.
    async with asyncio.timeout(120 + REQUEST_TIMEOUT * 3 + calls * 0.02):
        await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    return Load(calls, time.perf_counter() - start, latencies, errors, first_error)


async def measure(
    op: Callable[[], Awaitable[None]],
    calls: int,
    concurrency: int,
    warmup: int,
    watch: dict[str, list[int]],
) -> Load:
    """Warm up, then drive `op` while recording the CPU each watched group of processes (and this one) uses."""
    check = await drive(op, 1, 1)
    if check.errors:
        raise CallFailed(f"the first call failed: {check.first_error}")
    await drive(op, warmup, concurrency)
    # This process's own garbage collector must not pause the calls it times: keep what exists
    # out of its scans (what the run allocates is still collected).
    gc.collect()
    gc.freeze()
    before = {name: cpu_ms(pids) for name, pids in watch.items()}
    bench_before = time.process_time()
    load = await drive(op, calls, concurrency)
    load.cpu_ms = {name: cpu_ms(pids) - before[name] for name, pids in watch.items()}
    load.cpu_ms["bench"] = (time.process_time() - bench_before) * 1000.0
    return load


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Row:
    scenario: str
    concurrency: int
    path: str
    load: Load
    baseline: Load | None = None  # the direct row this one is compared with
    note: str = ""
    rss: float | None = None  # MB: the gateway's (all its workers'), right after the run


async def call_section(era: str, sse: bool, calls: int, levels: list[int], workdir: Path) -> list[Row]:
    label = f"{era} {'sse' if sse else 'json'}"
    rows: list[Row] = []
    async with (
        upstream("lean", workdir, handshake_only=era == "handshake", sse=sse) as (up, up_url),
        gateway(workdir, [http_server("lean", up_url)]) as (gw, gw_url),
    ):
        watch = {"upstream": [up.pid], "gateway": gw.pids}
        for concurrency in levels:
            async with new_http(concurrency) as http:
                direct_ep = await Endpoint.open(up_url, era, http)
                direct = await measure(echo_op(direct_ep, "echo"), calls, concurrency, WARMUP_CALLS, watch)
            rows.append(Row(label, concurrency, "direct", direct))
            async with new_http(concurrency) as http:
                gw_ep = await Endpoint.open(gw_url, era, http)
                through = await measure(echo_op(gw_ep, "lean__echo"), calls, concurrency, WARMUP_CALLS, watch)
            rows.append(Row(label, concurrency, "gateway", through, baseline=direct, rss=rss_mb(gw.pids)))
    return rows


async def stdio_section(era: str, calls: int, levels: list[int], workdir: Path) -> list[Row]:
    """Direct: this process speaks to a lean stdio upstream it started. Gateway: HTTP in, the gateway's own
    stdio child out (the era in the label is the client's and the upstream's)."""
    label = f"{era} stdio"
    rows: list[Row] = []
    handshake_only = era == "handshake"
    async with (
        stdio_upstream(workdir, handshake_only=handshake_only) as direct_child,
        gateway(workdir, [stdio_server("lean", handshake_only=handshake_only)]) as (gw, gw_url),
    ):
        gw_upstream = children(gw.pid)
        for concurrency in levels:
            direct_ep = await StdioEndpoint.open(direct_child, era)
            try:
                watch = {"upstream": [direct_child.pid], "gateway": gw.pids}
                direct = await measure(echo_op(direct_ep, "echo"), calls, concurrency, WARMUP_CALLS, watch)
            finally:
                await direct_ep.close()
            rows.append(Row(label, concurrency, "direct", direct, note="bench <-> stdio pipes"))
            async with new_http(concurrency) as http:
                gw_ep = await Endpoint.open(gw_url, era, http)
                watch = {"upstream": gw_upstream, "gateway": gw.pids}
                through = await measure(echo_op(gw_ep, "lean__echo"), calls, concurrency, WARMUP_CALLS, watch)
            rows.append(
                Row(
                    label,
                    concurrency,
                    "gateway",
                    through,
                    baseline=direct,
                    rss=rss_mb(gw.pids),
                    note="HTTP in, stdio out",
                )
            )
    return rows


async def list_section(era: str, calls: int, workdir: Path) -> list[Row]:
    total = LIST_UPSTREAMS * LIST_TOOLS_EACH
    label = f"{era} list"
    async with contextlib.AsyncExitStack() as stack:
        ups: list[tuple[Child, str]] = [
            await stack.enter_async_context(upstream(f"lean{i}", workdir, tools=LIST_TOOLS_EACH))
            for i in range(LIST_UPSTREAMS)
        ]
        servers = [http_server(f"lean{i}", url) for i, (_, url) in enumerate(ups)]
        gw, gw_url = await stack.enter_async_context(gateway(workdir, servers))
        watch = {"upstream": [child.pid for child, _ in ups], "gateway": gw.pids}
        async with new_http(1) as http:
            one = await Endpoint.open(ups[0][1], era, http)
            direct = await measure(list_op([one], LIST_TOOLS_EACH), calls, 1, LIST_WARMUP, watch)
            each = [await Endpoint.open(url, era, http) for _, url in ups]
            direct_all = await measure(list_op(each, total), calls, 1, LIST_WARMUP, watch)
            gw_ep = await Endpoint.open(gw_url, era, http)
            through = await measure(list_op([gw_ep], total), calls, 1, LIST_WARMUP, watch)
            pages = await _pages(gw_ep)
        memory = rss_mb(gw.pids)
    return [
        Row(label, 1, "direct", direct, note=f"1 upstream, {LIST_TOOLS_EACH} tools"),
        Row(label, 1, "direct x10", direct_all, note=f"{LIST_UPSTREAMS} upstreams in turn, {total} tools"),
        Row(
            label,
            1,
            "gateway",
            through,
            baseline=direct,
            rss=memory,
            note=f"{total} tools in {pages} page(s); p50 vs direct x10: "
            f"{through.pct(0.5) - direct_all.pct(0.5):+.2f} ms",
        ),
    ]


async def _pages(endpoint: Endpoint) -> int:
    pages, cursor = 0, None
    while True:
        result = await endpoint.send(endpoint.prepare("tools/list", {"cursor": cursor} if cursor else {}))
        pages += 1
        cursor = result.get("nextCursor")
        if not cursor:
            return pages


@dataclass
class SessionsResult:
    idle_rss: float  # MB, the gateway settled after start-up, before any traffic
    before: float  # MB, after a warm-up of calls, before the sessions
    after: float  # MB, with every session open and idle
    sessions: int
    open_s: float
    cpu_ms_per_session: float
    direct_before: float
    direct_after: float
    still_served: bool

    @property
    def added(self) -> float:
        return self.after - self.before


async def sessions_section(count: int, workdir: Path) -> SessionsResult:
    """Idle RSS, then `count` handshake-era sessions opened with initialize (+ initialized) and left idle."""
    async with (
        upstream("lean", workdir) as (up, up_url),
        gateway(workdir, [http_server("lean", up_url)]) as (gw, gw_url),
    ):
        idle = await settled_rss(gw.pids)
        async with new_http(SESSION_CONCURRENCY) as http:
            # A little traffic first, so what the sessions add is not the first call's warm-up.
            first = await Endpoint.open(gw_url, "handshake", http)
            await drive(echo_op(first, "lean__echo"), WARMUP_CALLS, 4)
            modern_ep = await Endpoint.open(gw_url, "modern", http)
            await drive(echo_op(modern_ep, "lean__echo"), WARMUP_CALLS, 4)
            before = await settled_rss(gw.pids)
            direct_before = rss_mb([up.pid])
            cpu_before = cpu_ms(gw.pids)
            start = time.perf_counter()
            opened = 1  # `first` is one of them: with `count` at max_sessions, none is evicted

            async def opener() -> None:
                nonlocal opened
                while opened < count:
                    opened += 1
                    await Endpoint.open(gw_url, "handshake", http)

            async with asyncio.timeout(120 + count * 0.01):
                await asyncio.gather(*(opener() for _ in range(SESSION_CONCURRENCY)))
            open_s = time.perf_counter() - start
            cpu = cpu_ms(gw.pids) - cpu_before
            after = await settled_rss(gw.pids)
            # The first session is the oldest: with exactly max_sessions open it is still there.
            still_served = True
            try:
                await echo_op(first, "lean__echo")()
            except CallFailed:
                still_served = False
            direct_after = rss_mb([up.pid])
    return SessionsResult(idle, before, after, count, open_s, cpu / count, direct_before, direct_after, still_served)


async def workers_section(calls: int, concurrency: int, workdir: Path) -> list[Row]:
    """Stateless-era throughput through 1 and through WORKERS workers, in the same run; and the
    handshake era through WORKERS workers, where requests that land on the other worker are forwarded."""
    rows: list[Row] = []
    async with upstream("lean", workdir) as (up, up_url):
        async with new_http(concurrency) as http:
            direct_ep = await Endpoint.open(up_url, "modern", http)
            direct = await measure(echo_op(direct_ep, "echo"), calls, concurrency, WARMUP_CALLS, {"upstream": [up.pid]})
        rows.append(Row("modern json", concurrency, "direct", direct))
        one: Load | None = None
        for workers in (1, WORKERS):
            async with gateway(workdir, [http_server("lean", up_url)], workers=workers) as (gw, gw_url):
                watch = {"upstream": [up.pid], "gateway": gw.pids}
                async with new_http(concurrency) as http:
                    gw_ep = await Endpoint.open(gw_url, "modern", http)
                    load = await measure(echo_op(gw_ep, "lean__echo"), calls, concurrency, WARMUP_CALLS, watch)
                note = f"{workers} worker{'s' if workers > 1 else ''}"
                if workers > 1:
                    spread = ", ".join(f"w{k}: {v}" for k, v in sorted(gw_ep.answered_by.items()))
                    note += f" ({spread}); vs 1 worker: {load.rate / one.rate:.2f}x" if one else ""
                else:
                    one = load
                rows.append(Row("modern json", concurrency, f"gateway {workers}w", load, direct, note, rss_mb(gw.pids)))
                if workers > 1:
                    async with new_http(concurrency) as http:
                        hs_ep = await Endpoint.open(gw_url, "handshake", http)
                        hs = await measure(echo_op(hs_ep, "lean__echo"), calls, concurrency, WARMUP_CALLS, watch)
                    spread = ", ".join(f"w{k}: {v}" for k, v in sorted(hs_ep.answered_by.items()))
                    rows.append(
                        Row(
                            "handshake json",
                            concurrency,
                            f"gateway {workers}w",
                            hs,
                            direct,
                            f"one session, so one owner: answered by {spread}, {hs_ep.forwarded} of them forwarded",
                            rss_mb(gw.pids),
                        )
                    )
    return rows


# --------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row], unit: str) -> str:
    """One line per row; `unit` names what one operation is ("call", "list")."""
    header = [
        "scenario",
        "conc",
        "path",
        f"{unit}s/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "added p50",
        "added p99",
        f"gw CPU ms/{unit}",
        f"up CPU ms/{unit}",
        f"bench CPU ms/{unit}",
        "gw RSS MB",
        "gw/direct",
        "note",
    ]
    body: list[list[str]] = []
    for row in rows:
        load, base = row.load, row.baseline
        through = row.path.startswith("gateway")
        body.append(
            [
                row.scenario,
                str(row.concurrency),
                row.path,
                f"{load.rate:.0f}",
                _fmt(load.pct(0.50)),
                _fmt(load.pct(0.99)),
                _fmt(max(load.latencies_ms)),
                str(load.errors),
                _fmt(load.pct(0.50) - base.pct(0.50)) if base else "",
                _fmt(load.pct(0.99) - base.pct(0.99)) if base else "",
                _fmt(load.cpu_per_call("gateway"), 3) if through else "",
                _fmt(load.cpu_per_call("upstream"), 3),
                _fmt(load.cpu_per_call("bench"), 3),
                _fmt(row.rss, 1) if row.rss is not None else "",
                f"{load.rate / base.rate:.2f}" if base and base.rate else "",
                row.note,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    numeric = range(3, len(header) - 1)
    lines = [
        "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *body]
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def sessions_table(result: SessionsResult) -> str:
    per = result.added * 1024 / result.sessions if result.sessions else 0.0
    return "\n".join(
        [
            f"gateway idle RSS (settled after start-up, no traffic yet):       {result.idle_rss:7.1f} MB"
            f"   target <= {TARGET_IDLE_RSS:g} MB",
            f"gateway RSS after a warm-up of calls:                            {result.before:7.1f} MB",
            f"gateway RSS with {result.sessions} idle handshake-era sessions:          {result.after:7.1f} MB",
            f"added by the sessions:                                           {result.added:7.1f} MB"
            f"   target <= {TARGET_SESSIONS_RSS:g} MB ({per:.1f} KB per session)",
            f"opening them (initialize + notifications/initialized, {SESSION_CONCURRENCY} at a time): "
            f"{result.open_s:.1f} s, {result.sessions / result.open_s:.0f} sessions/s, "
            f"gateway CPU {result.cpu_ms_per_session:.3f} ms per session",
            f"the oldest session still answers a call afterwards: {'yes' if result.still_served else 'NO'}",
            f"for reference, the lean upstream (direct) holds {result.sessions} sessions of its own in "
            f"{result.direct_after - result.direct_before:+.1f} MB (a set of ids: the floor)",
        ]
    )


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    unit: str
    higher_is_better: bool = False
    detail: str = ""

    def line(self) -> str:
        if self.measured is None:
            return f"  {self.name:<58} not measured in this run"
        met = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        sign = ">=" if self.higher_is_better else "<="
        if met:
            verdict = "met"
        else:
            miss = self.limit - self.measured if self.higher_is_better else self.measured - self.limit
            verdict = f"MISSED by {miss:.2f}{self.unit} ({100 * miss / self.limit:.0f}%)"
        value = f"{self.measured:.3f}{self.unit}" if abs(self.measured) < 10 else f"{self.measured:.1f}{self.unit}"
        line = f"  {self.name:<58} {value:>12}  target {sign} {self.limit:g}{self.unit}  {verdict}"
        return line + (f"  [{self.detail}]" if self.detail else "")


def targets(
    call_rows: list[Row], list_rows: list[Row], sessions: SessionsResult | None, worker_rows: list[Row]
) -> list[Target]:
    def through(scenario: str) -> list[Row]:
        return [r for r in call_rows if r.scenario == scenario and r.path == "gateway"]

    def worst_cpu(scenario: str) -> tuple[float | None, str]:
        rows = through(scenario)
        cpus = [(r.load.cpu_per_call("gateway") or 0.0, r.concurrency) for r in rows]
        if not cpus:
            return None, ""
        value, conc = max(cpus)
        return value, f"worst level: c={conc}"

    def at(scenario: str, conc: int) -> Row | None:
        return next((r for r in through(scenario) if r.concurrency == conc), None)

    out: list[Target] = []
    cpu, detail = worst_cpu("modern json")
    out.append(Target("gateway CPU per tools/call, 2026-07-28, JSON", cpu, TARGET_CPU_MODERN, " ms", detail=detail))
    cpu, detail = worst_cpu("handshake json")
    out.append(
        Target("gateway CPU per tools/call, handshake era, JSON", cpu, TARGET_CPU_HANDSHAKE, " ms", detail=detail)
    )
    for scenario in ("modern json", "handshake json"):
        row = at(scenario, 1)
        base = row.baseline if row else None
        p50 = row.load.pct(0.5) - base.pct(0.5) if row and base else None
        p99 = row.load.pct(0.99) - base.pct(0.99) if row and base else None
        out.append(Target(f"added p50 at concurrency 1, {scenario}", p50, TARGET_ADDED_P50, " ms"))
        out.append(Target(f"added p99 at concurrency 1, {scenario}", p99, TARGET_ADDED_P99, " ms"))
    row64 = at("modern json", 64)
    rate = row64.load.rate if row64 else None
    errors = sum(r.load.errors for r in call_rows)
    out.append(
        Target(
            "throughput at concurrency 64, one worker, 2026-07-28 JSON",
            rate,
            TARGET_RATE_64,
            " calls/s",
            higher_is_better=True,
            detail=f"errors in all tools/call runs: {errors}",
        )
    )
    listed = next((r for r in list_rows if r.path == "gateway" and r.scenario.startswith("modern")), None)
    added = listed.load.pct(0.5) - listed.baseline.pct(0.5) if listed and listed.baseline else None
    out.append(Target("tools/list, 10 upstreams x 50 tools: added p50", added, TARGET_LIST_P50, " ms"))
    out.append(Target("idle RSS", sessions.idle_rss if sessions else None, TARGET_IDLE_RSS, " MB"))
    out.append(
        Target(
            f"RSS added by {sessions.sessions if sessions else SESSIONS} idle handshake-era sessions",
            sessions.added if sessions else None,
            TARGET_SESSIONS_RSS,
            " MB",
        )
    )
    one = next((r for r in worker_rows if r.path == "gateway 1w"), None)
    many = next((r for r in worker_rows if r.path == f"gateway {WORKERS}w" and r.scenario == "modern json"), None)
    ratio = many.load.rate / one.load.rate if one and many and one.load.rate else None
    projected = ""
    if one and many:
        cpu_one, cpu_many = one.load.cpu_per_call("gateway"), many.load.cpu_per_call("gateway")
        if cpu_one and cpu_many:
            # What the gateway's own CPU cost per call allows when each worker has a core of its own.
            projected = f"; a core per worker: {WORKERS * cpu_one / cpu_many:.2f}x by CPU per call"
    out.append(
        Target(
            f"--workers {WORKERS} stateless throughput / 1 worker",
            ratio,
            TARGET_WORKERS,
            "x",
            higher_is_better=True,
            detail=f"c={WORKERS_CONCURRENCY}, {os.cpu_count()} cores shared with the bench and the upstream{projected}",
        )
    )
    return out


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in ("toolway", "aiohttp", "uvicorn", "uvloop", "orjson"))
    return (
        f"machine: nproc={len(os.sched_getaffinity(0))} ({model or platform.machine()}), "
        f"{platform.system()} {platform.release()}\n"
        f"python {platform.python_version()} ({sys.executable}); {versions}"
    )


def _loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _errors(rows: list[Row]) -> list[str]:
    return [
        f"  {r.scenario} c={r.concurrency} {r.path}: {r.load.errors} error(s), first: {r.load.first_error}"
        for r in rows
        if r.load.errors
    ]


# --------------------------------------------------------------------------------------------
# Main


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not levels or any(not 1 <= c <= MAX_CONCURRENCY for c in levels):
        raise argparse.ArgumentTypeError(f"each concurrency must be between 1 and {MAX_CONCURRENCY}")
    return levels


def _scenarios(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SCENARIOS)}; got {text!r}")
    return chosen


def _setting(text: str) -> dict[str, Any]:
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected key.path=value, got {text!r}")
    value: Any = yaml.safe_load(raw)
    for key in reversed(path.split(".")):
        value = {key: value}
    return dict(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and levels: 1000 calls, levels 1,64")
    parser.add_argument("--calls", type=int, default=None, help="measured tools/call per level and path (3000)")
    parser.add_argument("--concurrency", type=_levels, default=None, help="comma-separated levels (1,16,64)")
    parser.add_argument("--era", choices=["modern", "handshake", "both"], default="both")
    parser.add_argument("--list-calls", type=int, default=None, help="measured full tools/list per path (500)")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help=f"idle sessions to open ({SESSIONS})")
    parser.add_argument("--only", type=_scenarios, default=list(SCENARIOS), help=f"some of: {','.join(SCENARIOS)}")
    parser.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the gateway's config, e.g. --set audit.enabled=false (repeatable)",
    )
    args = parser.parse_args(argv)
    args.calls = args.calls or (1000 if args.quick else 3000)
    args.concurrency = args.concurrency or ([1, 64] if args.quick else [1, 16, 64])
    args.list_calls = args.list_calls or (100 if args.quick else 500)
    if not 1 <= args.calls <= MAX_CALLS:
        parser.error(f"--calls must be between 1 and {MAX_CALLS}")
    if not 1 <= args.list_calls <= MAX_CALLS // 10:
        parser.error(f"--list-calls must be between 1 and {MAX_CALLS // 10}")
    if not 1 <= args.sessions <= 100_000:
        parser.error("--sessions must be between 1 and 100000")
    return args


async def run(args: argparse.Namespace) -> int:
    eras = ["modern", "handshake"] if args.era == "both" else [args.era]
    for change in args.set:
        GATEWAY_OVERRIDES.update(_merge(GATEWAY_OVERRIDES, change))
    # SIGTERM (and SIGINT, where it is not ignored) unwind through the finally blocks that stop
    # the child processes.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    began = time.perf_counter()
    print(machine())
    print(f"load average before: {_loadavg()}")
    print(
        f"calls per level and path: {args.calls} (after {WARMUP_CALLS} warm-up); "
        f"concurrency: {','.join(map(str, args.concurrency))}; eras: {', '.join(eras)}; "
        f"scenarios: {', '.join(args.only)}"
        + (f"; gateway config changed: {GATEWAY_OVERRIDES}" if GATEWAY_OVERRIDES else "")
        + "\n",
        flush=True,
    )
    call_rows: list[Row] = []
    list_rows: list[Row] = []
    worker_rows: list[Row] = []
    sessions: SessionsResult | None = None
    with tempfile.TemporaryDirectory(prefix="toolway-hop-") as tmp:
        workdir = Path(tmp)
        if "call" in args.only:
            for era in eras:
                for sse in (False, True):
                    call_rows += await call_section(era, sse, args.calls, args.concurrency, workdir)
            print("tools/call echo over HTTP, direct vs through the gateway (upstream answers JSON or SSE)")
            print(table(call_rows, "call"), flush=True)
        if "stdio" in args.only:
            stdio_rows: list[Row] = []
            for era in eras:
                stdio_rows += await stdio_section(era, args.calls, args.concurrency, workdir)
            print("\ntools/call echo to a stdio upstream: direct over its pipes vs HTTP through the gateway")
            print(table(stdio_rows, "call"), flush=True)
            call_rows += stdio_rows
        if "list" in args.only:
            for era in eras:
                list_rows += await list_section(era, args.list_calls, workdir)
            print(
                f"\ntools/list at concurrency 1, {args.list_calls} full lists per path "
                f"(gateway: {LIST_UPSTREAMS} upstreams x {LIST_TOOLS_EACH} tools; every page of the list)"
            )
            print(table(list_rows, "list"), flush=True)
        if "sessions" in args.only:
            sessions = await sessions_section(args.sessions, workdir)
            print(f"\nmemory: idle, and {args.sessions} idle handshake-era sessions")
            print(sessions_table(sessions), flush=True)
        if "workers" in args.only:
            worker_rows = await workers_section(args.calls * 2, WORKERS_CONCURRENCY, workdir)
            print(f"\ntoolway serve --workers {WORKERS} vs one worker, tools/call at concurrency {WORKERS_CONCURRENCY}")
            print(table(worker_rows, "call"), flush=True)
    print(f"\nload average after: {_loadavg()} (anything else busy on the machine skews both paths)")
    print(f"\ntargets (issue 9), from this run ({time.perf_counter() - began:.0f} s):")
    print("\n".join(t.line() for t in targets(call_rows, list_rows, sessions, worker_rows)))
    problems = _errors(call_rows + list_rows + worker_rows)
    if sessions is not None and not sessions.still_served:
        problems.append("  sessions: the oldest session no longer answered after the others were opened")
    if problems:
        print("\nerrors:\n" + "\n".join(problems))
    print(
        "\nadded p50/p99 = gateway - direct (same scenario, same concurrency, same run); gw/direct = ops/s ratio.\n"
        "CPU columns: user+sys CPU of that process (the gateway: all its workers) during the measured ops,\n"
        "per op; 'bench' is this load generator, which shares the machine's cores with both.\n"
        "gw RSS: resident memory of the gateway right after the run (VmRSS; with workers: the parent's and\n"
        "the workers' Pss summed, so what they share after the fork counts once)."
    )
    return 1 if problems else 0


def _run(args: argparse.Namespace) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(args))
    return uvloop.run(run(args))


def main() -> None:
    args = parse_args()
    try:
        sys.exit(_run(args))
    except (RuntimeError, CallFailed) as exc:
        print(f"hop: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("hop: interrupted; child processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
