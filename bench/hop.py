"""What one hop through Toolway costs: the same MCP calls straight to a server and through the gateway.

Starts a lean upstream (``bench/lean_upstream.py``) and a ``toolway serve`` in front of it, both as
child processes on 127.0.0.1, then drives ``tools/call`` from this process with aiohttp at each
concurrency level, first straight to the upstream ("direct") and then through the gateway. Both
paths run from the same process, on the same machine, back to back: compare them by the ratios it
prints, not by the absolute numbers. A second section lists 500 tools through the gateway (10
upstreams of 50) against one upstream's ``tools/list``.

    .venv/bin/python bench/hop.py [--calls N] [--concurrency 1,16,64] [--era modern|handshake|both]

Eras: "modern" is the stateless 2026-07-28 era on both sides (``_meta`` envelope and routing
headers; the gateway finds the upstream by ``server/discover``). "handshake" is 2025-11-25 on both
sides: the client opens a session with ``initialize``, and the upstream runs ``--handshake-only``
so the gateway falls back to ``initialize`` too.

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

MAX_CALLS = 100_000
MAX_CONCURRENCY = 1024
WARMUP_CALLS = 200
LIST_WARMUP = 50
LIST_UPSTREAMS = 10
LIST_TOOLS_EACH = 50
STARTUP_TIMEOUT = 30.0  # seconds to wait for a child's ready line
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP exchange
STOP_GRACE = 5.0  # SIGTERM, then SIGKILL after this long
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Child processes


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    stderr_path: Path
    drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_ms(self) -> float:
        """User + system CPU the process has used so far, in milliseconds."""
        return _cpu_ms(self.pid)

    def stderr_tail(self, lines: int = 20) -> str:
        return _tail(self.stderr_path, lines)


def _cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after "pid (comm)": state is index 0, utime 11, stime 12 (proc(5) fields 14 and 15).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / CLK_TCK


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _open_log(path: Path) -> Any:
    return open(path, "ab")  # appended: the tools/list section restarts names used before


def _child_env() -> dict[str, str]:
    # TOOLWAY_* variables would override the bench's config: keep the run reproducible.
    return {k: v for k, v in os.environ.items() if not k.startswith("TOOLWAY_")}


async def _start(name: str, argv: list[str], ready: Callable[[str], str | None], workdir: Path) -> tuple[Child, str]:
    """Start a child and read its stdout until `ready` recognises a line (at most STARTUP_TIMEOUT s)."""
    stderr_path = workdir / f"{name}.stderr.log"
    stderr = _open_log(stderr_path)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=workdir,
            env=_child_env(),
        )
    finally:
        stderr.close()  # the child has its own copy
    child = Child(name, process, stderr_path)
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
            await asyncio.wait_for(process.wait(), STOP_GRACE)
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


@contextlib.asynccontextmanager
async def upstream(
    name: str, workdir: Path, *, tools: int = 0, handshake_only: bool = False
) -> AsyncIterator[tuple[Child, str]]:
    """A lean upstream for the block; yields it and its /mcp URL."""
    argv = [sys.executable, str(LEAN_UPSTREAM)]
    if tools:
        argv += ["--tools", str(tools)]
    if handshake_only:
        argv.append("--handshake-only")
    child, port = await _start(name, argv, _ready_port, workdir)
    try:
        yield child, f"http://127.0.0.1:{port}/mcp"
    finally:
        await _stop(child)


def _write_config(workdir: Path, servers: dict[str, str]) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"enabled": False},
        "store": f"sqlite:///{workdir / 'toolway.db'}",
        "servers": [
            {
                "name": name,
                "transport": "streamable-http",
                "url": url,
                "timeouts": {"connect": 10, "call": 30},
            }
            for name, url in servers.items()
        ],
        # The access log is at info: at warning the gateway writes nothing per call.
        "logging": {"level": "warning", "format": "json"},
        "shutdown": {"drain_seconds": 1},
    }
    path = workdir / "toolway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def gateway(workdir: Path, servers: dict[str, str]) -> AsyncIterator[tuple[Child, str]]:
    """`toolway serve` in front of `servers` (name -> URL) for the block; yields it and its /mcp URL."""
    config = _write_config(workdir, servers)
    argv = [str(TOOLWAY), "serve", "--config", str(config)]
    child, url = await _start("gateway", argv, _ready_url, workdir)
    try:
        yield child, url
    finally:
        await _stop(child)


# --------------------------------------------------------------------------------------------
# MCP over HTTP, as a client


class CallFailed(Exception):
    pass


@dataclass
class Endpoint:
    """One MCP endpoint as this client speaks to it, in one era."""

    url: str
    era: str  # "modern" or "handshake"
    http: aiohttp.ClientSession
    session_id: str | None = None
    _ids: int = 0

    @classmethod
    async def open(cls, url: str, era: str, http: aiohttp.ClientSession) -> Endpoint:
        endpoint = cls(url, era, http)
        if era == "handshake":
            await endpoint._initialize()
        return endpoint

    async def _initialize(self) -> None:
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
        return Request(self, method, params, self._headers(method, name))

    async def send(self, request: Request) -> dict[str, Any]:
        """POST one request; its result, or CallFailed (non-200, JSON-RPC error, bad body)."""
        self._ids += 1
        body = orjson.dumps({"jsonrpc": "2.0", "id": self._ids, "method": request.method, "params": request.params})
        async with self.http.post(self.url, data=body, headers=request.headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise CallFailed(f"HTTP {resp.status}: {raw[:300]!r}")
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise CallFailed(f"not JSON: {raw[:300]!r}") from None
        result = message.get("result") if isinstance(message, dict) else None
        if not isinstance(result, dict):
            raise CallFailed(f"JSON-RPC error or no result: {raw[:300]!r}")
        return result


@dataclass(frozen=True)
class Request:
    endpoint: Endpoint
    method: str
    params: dict[str, Any]
    headers: dict[str, str]


def echo_op(endpoint: Endpoint, tool: str) -> Callable[[], Awaitable[None]]:
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
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process name -> CPU used during the run

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
    watch: dict[str, list[Child]],
) -> Load:
    """Warm up, then drive `op` while recording the CPU each watched process (and this one) uses."""
    check = await drive(op, 1, 1)
    if check.errors:
        raise CallFailed(f"the first call failed: {check.first_error}")
    await drive(op, warmup, concurrency)
    # This process's own garbage collector must not pause the calls it times: keep what exists
    # out of its scans (what the run allocates is still collected).
    gc.collect()
    gc.freeze()
    before = {name: sum(c.cpu_ms() for c in group) for name, group in watch.items()}
    bench_before = time.process_time()
    load = await drive(op, calls, concurrency)
    load.cpu_ms = {name: sum(c.cpu_ms() for c in group) - before[name] for name, group in watch.items()}
    load.cpu_ms["bench"] = (time.process_time() - bench_before) * 1000.0
    return load


# --------------------------------------------------------------------------------------------
# The two sections


@dataclass
class Row:
    era: str
    concurrency: int
    path: str
    load: Load
    baseline: Load | None = None  # the direct row this one is compared with
    note: str = ""


async def hop_section(era: str, calls: int, levels: list[int], workdir: Path) -> list[Row]:
    rows: list[Row] = []
    async with (
        upstream("lean", workdir, handshake_only=era == "handshake") as (up, up_url),
        gateway(workdir, {"lean": up_url}) as (gw, gw_url),
    ):
        for concurrency in levels:
            async with new_http(concurrency) as http:
                direct_ep = await Endpoint.open(up_url, era, http)
                direct = await measure(
                    echo_op(direct_ep, "echo"),
                    calls,
                    concurrency,
                    WARMUP_CALLS,
                    {"upstream": [up], "gateway": [gw]},
                )
            rows.append(Row(era, concurrency, "direct", direct))
            async with new_http(concurrency) as http:
                gw_ep = await Endpoint.open(gw_url, era, http)
                through = await measure(
                    echo_op(gw_ep, "lean__echo"),
                    calls,
                    concurrency,
                    WARMUP_CALLS,
                    {"upstream": [up], "gateway": [gw]},
                )
            rows.append(Row(era, concurrency, "gateway", through, baseline=direct))
    return rows


async def list_section(era: str, calls: int, workdir: Path) -> list[Row]:
    total = LIST_UPSTREAMS * LIST_TOOLS_EACH
    async with contextlib.AsyncExitStack() as stack:
        ups: list[tuple[Child, str]] = [
            await stack.enter_async_context(upstream(f"lean{i}", workdir, tools=LIST_TOOLS_EACH))
            for i in range(LIST_UPSTREAMS)
        ]
        servers = {f"lean{i}": url for i, (_, url) in enumerate(ups)}
        gw, gw_url = await stack.enter_async_context(gateway(workdir, servers))
        watch = {"upstream": [child for child, _ in ups], "gateway": [gw]}
        async with new_http(1) as http:
            one = await Endpoint.open(ups[0][1], era, http)
            direct = await measure(list_op([one], LIST_TOOLS_EACH), calls, 1, LIST_WARMUP, watch)
            each = [await Endpoint.open(url, era, http) for _, url in ups]
            direct_all = await measure(list_op(each, total), calls, 1, LIST_WARMUP, watch)
            gw_ep = await Endpoint.open(gw_url, era, http)
            through = await measure(list_op([gw_ep], total), calls, 1, LIST_WARMUP, watch)
            pages = await _pages(gw_ep)
    return [
        Row(era, 1, "direct", direct, note=f"1 upstream, {LIST_TOOLS_EACH} tools"),
        Row(era, 1, "direct x10", direct_all, note=f"{LIST_UPSTREAMS} upstreams in turn, {total} tools"),
        Row(
            era,
            1,
            "gateway",
            through,
            baseline=direct,
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


# --------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row], unit: str) -> str:
    """One line per row; `unit` names what one operation is ("call", "list")."""
    header = [
        "era",
        "conc",
        "path",
        f"{unit}s/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "added p50 ms",
        f"gw CPU ms/{unit}",
        f"upstream CPU ms/{unit}",
        f"bench CPU ms/{unit}",
        "throughput gw/direct",
        "note",
    ]
    body: list[list[str]] = []
    for row in rows:
        load, base = row.load, row.baseline
        body.append(
            [
                row.era,
                str(row.concurrency),
                row.path,
                f"{load.rate:.0f}",
                _fmt(load.pct(0.50)),
                _fmt(load.pct(0.99)),
                _fmt(max(load.latencies_ms)),
                str(load.errors),
                _fmt(load.pct(0.50) - base.pct(0.50)) if base else "",
                _fmt(load.cpu_per_call("gateway"), 3) if row.path == "gateway" else "",
                _fmt(load.cpu_per_call("upstream"), 3),
                _fmt(load.cpu_per_call("bench"), 3),
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
        f"  {r.era} c={r.concurrency} {r.path}: {r.load.errors} error(s), first: {r.load.first_error}"
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=3000, help="measured tools/call per level and path")
    parser.add_argument("--concurrency", type=_levels, default=[1, 16, 64], help="comma-separated levels")
    parser.add_argument("--era", choices=["modern", "handshake", "both"], default="both")
    parser.add_argument("--list-calls", type=int, default=500, help="measured full tools/list per path")
    lists = parser.add_mutually_exclusive_group()
    lists.add_argument("--tools-list", action="store_true", help="run only the tools/list section")
    lists.add_argument("--no-tools-list", action="store_true", help="skip the tools/list section")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= MAX_CALLS:
        parser.error(f"--calls must be between 1 and {MAX_CALLS}")
    if not 1 <= args.list_calls <= MAX_CALLS // 10:
        parser.error(f"--list-calls must be between 1 and {MAX_CALLS // 10}")
    return args


async def run(args: argparse.Namespace) -> int:
    eras = ["modern", "handshake"] if args.era == "both" else [args.era]
    # SIGTERM (and SIGINT, where it is not ignored) unwind through the finally blocks that stop
    # the child processes.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    print(machine())
    print(f"load average before: {_loadavg()}")
    print(
        f"calls per level and path: {args.calls} (after {WARMUP_CALLS} warm-up); "
        f"concurrency: {','.join(map(str, args.concurrency))}; eras: {', '.join(eras)}\n",
        flush=True,
    )
    hop_rows: list[Row] = []
    list_rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="toolway-hop-") as tmp:
        workdir = Path(tmp)
        if not args.tools_list:
            for era in eras:
                hop_rows += await hop_section(era, args.calls, args.concurrency, workdir)
            print("tools/call echo, direct vs through the gateway")
            print(table(hop_rows, "call"), flush=True)
        if not args.no_tools_list:
            for era in eras:
                list_rows += await list_section(era, args.list_calls, workdir)
            print(
                f"\ntools/list at concurrency 1, {args.list_calls} full lists per path "
                f"(gateway: {LIST_UPSTREAMS} upstreams x {LIST_TOOLS_EACH} tools; every page of the list)"
            )
            print(table(list_rows, "list"), flush=True)
    print(f"\nload average after: {_loadavg()} (anything else busy on the machine skews both paths)")
    problems = _errors(hop_rows + list_rows)
    if problems:
        print("\nerrors:\n" + "\n".join(problems))
    print(
        "\nadded p50 = gateway p50 - direct p50 (same era, same concurrency, same run).\n"
        "throughput gw/direct = gateway ops/s / direct ops/s.\n"
        "CPU columns: user+sys CPU of that process during the measured ops, per op; 'bench' is this\n"
        "load generator, which shares the machine's cores with both."
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
