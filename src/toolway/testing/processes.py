"""Run the fixture upstream (``toolway.testing.upstream``) as a child process, from asyncio tests.

HTTP upstreams are started here and announce their port; stdio upstreams are started by whoever
speaks to them (a gateway, ``mcp.Client``), so for those this module only builds the command line.
A child's stderr is the test process's stderr, so it is never left to fill a pipe, and pytest
shows it with a failing test.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "RunningHttpUpstream",
    "http_upstream",
    "start_http_upstream",
    "stdio_upstream_command",
]

UPSTREAM_MODULE = "toolway.testing.upstream"
STOP_GRACE_SECONDS = 5.0

HttpTransport = Literal["streamable-http", "sse", "ws"]
# transport -> (the fixture's --transport, the URL a client is given, {port} filled in)
_TRANSPORTS: dict[str, tuple[str, str]] = {
    "streamable-http": ("http", "http://127.0.0.1:{port}/mcp"),
    "sse": ("sse", "http://127.0.0.1:{port}/sse"),
    "ws": ("ws", "ws://127.0.0.1:{port}/mcp"),
}


@dataclass
class RunningHttpUpstream:
    """A fixture upstream serving ``url`` (Streamable HTTP, HTTP+SSE or WebSocket) from a child process."""

    name: str
    url: str
    port: int
    process: asyncio.subprocess.Process
    _stdout_drain: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)

    async def kill(self) -> None:
        """SIGKILL the process (no goodbye on the wire) and wait for it to be gone."""
        self._signal(signal.SIGKILL)
        await self._reap()

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process; SIGKILL it if it has not exited after ``grace`` seconds. Waits."""
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
        await self._reap()

    def _signal(self, signum: int) -> None:
        if self.process.returncode is not None:
            return
        # It may exit between the check and the signal (e.g. after the crash tool).
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    async def _reap(self) -> None:
        await self.process.wait()
        if self._stdout_drain is not None:
            await self._stdout_drain


def _upstream_args(
    name: str, transport: str, *, era: str, extra_tools: int, page_size: int, journal: str | None = None
) -> list[str]:
    args = [sys.executable, "-m", UPSTREAM_MODULE, "--name", name, "--transport", transport]
    if journal is not None:
        args += ["--journal", journal]
    if era != "both":
        args += ["--era", era]
    if extra_tools:
        args += ["--extra-tools", str(extra_tools)]
    if page_size:
        args += ["--page-size", str(page_size)]
    return args


def stdio_upstream_command(name: str, *, era: str = "both", extra_tools: int = 0, page_size: int = 0) -> list[str]:
    """The command line that runs the fixture upstream ``name`` over stdio (``argv[0]`` first)."""
    return _upstream_args(name, "stdio", era=era, extra_tools=extra_tools, page_size=page_size)


async def start_http_upstream(
    name: str,
    *,
    transport: HttpTransport = "streamable-http",
    port: int = 0,
    era: str = "both",
    json_response: bool = False,
    stateless: bool = False,
    extra_tools: int = 0,
    page_size: int = 0,
    journal: str | None = None,
    record_headers: str | None = None,
    timeout: float = 20.0,  # noqa: ASYNC109 - bounds only the wait for READY, not the upstream's life
) -> RunningHttpUpstream:
    """Start the fixture upstream ``name`` on ``port`` (0: ephemeral) and wait until it is ready.

    ``transport``: Streamable HTTP (``url`` ends in ``/mcp``), the 2024-11-05 HTTP+SSE transport
    (``url`` is its event stream, ``…/sse``) or WebSocket (``ws://…/mcp``). ``json_response`` and
    ``stateless`` are Streamable HTTP options. ``journal``: a file the ``record`` tool appends
    its keys to (it survives a ``kill()``). ``record_headers``: a file the upstream appends every
    request's headers to (``toolway.testing.recording.read_recorded`` reads it). Pass an earlier
    upstream's ``port`` to restart it where clients expect it. The caller owns the result:
    ``stop()`` or ``kill()`` it (or use ``http_upstream``).

    Raises:
        ValueError: Streamable HTTP options with another transport.
        TimeoutError: It did not print ``READY <port>`` within ``timeout`` seconds (it is killed).
        RuntimeError: It exited before it was ready.
    """
    flag, url_pattern = _TRANSPORTS[transport]
    args = _upstream_args(name, flag, era=era, extra_tools=extra_tools, page_size=page_size, journal=journal)
    args += ["--port", str(port)]
    if record_headers is not None:
        args += ["--record-headers", str(record_headers)]
    if transport == "streamable-http":
        args.append("--json-response" if json_response else "--sse-response")
        if stateless:
            args.append("--stateless")
    elif json_response or stateless:
        raise ValueError("json_response and stateless are Streamable HTTP options")
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=None
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            port = await _read_ready(process.stdout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        status = await process.wait()
        if isinstance(exc, TimeoutError):
            raise TimeoutError(f"upstream {name!r} did not print READY within {timeout}s") from None
        if isinstance(exc, EOFError):
            raise RuntimeError(f"upstream {name!r} exited with status {status} before it was ready") from None
        raise
    # Anything it prints later must not fill the pipe and block it.
    drain = asyncio.create_task(_forward_to_stderr(process.stdout), name=f"upstream {name} stdout")
    return RunningHttpUpstream(
        name=name, url=url_pattern.format(port=port), port=port, process=process, _stdout_drain=drain
    )


async def _read_ready(stdout: asyncio.StreamReader) -> int:
    """Read stdout up to the ``READY <port>`` line; return the port.

    Raises:
        EOFError: stdout closed first.
    """
    while True:
        line = await stdout.readline()
        if not line:
            raise EOFError
        text = line.decode(errors="replace").strip()
        word, _, rest = text.partition(" ")
        if word == "READY" and rest.isdigit():
            return int(rest)
        _echo(text)


async def _forward_to_stderr(stdout: asyncio.StreamReader) -> None:
    while line := await stdout.readline():
        _echo(line.decode(errors="replace").rstrip("\n"))


def _echo(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


@contextlib.asynccontextmanager
async def http_upstream(name: str, **kwargs: Any) -> AsyncIterator[RunningHttpUpstream]:
    """Run the fixture upstream ``name`` over HTTP for the ``async with`` block.

    Takes ``start_http_upstream``'s keyword arguments. On the way out it is stopped (SIGTERM,
    SIGKILL after 5 s) and always waited for, whether or not the block raised.

    Raises:
        TimeoutError, RuntimeError: As ``start_http_upstream``.
    """
    upstream = await start_http_upstream(name, **kwargs)
    try:
        yield upstream
    finally:
        await upstream.stop()
