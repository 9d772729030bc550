"""stdio upstream adapter: a child process speaking newline-delimited JSON-RPC.

The child runs in its own process group so shutdown reaches its children too;
its stderr goes to the gateway log line by line, never to our stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from toolway.upstream.channel import ChannelClosed

log = structlog.get_logger("toolway.upstream.stdio")

MessageSink = Callable[[dict[str, Any]], None]
_LINE_LIMIT = 64 * 1024 * 1024
_TERM_GRACE = 5.0


class StdioChannel:
    """One child process. Responses are matched to requests by JSON-RPC id.

    Everything else the child writes goes to `on_message`: the stdio wire does not
    say which request a log line or a server request belongs to.
    """

    session_id: str | None = None
    attributes_messages = False

    def __init__(
        self,
        server: str,
        command: list[str],
        env: dict[str, str],
        cwd: str | None,
        *,
        on_message: MessageSink | None = None,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self._server = server
        self._on_close = on_close
        self._command = command
        self._env = env
        self._cwd = cwd
        self.on_message = on_message
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self._closed_reason: str | None = None

    def describe(self) -> str:
        return " ".join(self._command)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def open(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **self._env},
                cwd=self._cwd,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise ChannelClosed(f"cannot start {self._command[0]!r}: {exc.strerror or exc}") from None
        self._closed_reason = None
        # Owned by this channel: cancelled and awaited in close().
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"stdio-out-{self._server}"),
            asyncio.create_task(self._read_stderr(), name=f"stdio-err-{self._server}"),
        ]

    async def roundtrip(
        self, message: dict[str, Any], headers: dict[str, str], on_message: MessageSink | None = None
    ) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        msg_id = message["id"]
        self._pending[msg_id] = future
        try:
            await self._write(message)
            return await future
        finally:
            self._pending.pop(msg_id, None)

    async def notify(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        await self._write(message)

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            await _terminate(proc)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._fail_pending("the gateway closed the connection")

    async def _write(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self._closed_reason is not None:
            raise ChannelClosed(self._closed_reason or "the process is not running", delivered=False)
        async with self._write_lock:
            try:
                proc.stdin.write(orjson.dumps(message) + b"\n")
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed(self._closed_reason or "the process closed its stdin") from None

    async def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                self._dispatch(line)
        except (ValueError, asyncio.LimitOverrunError):
            log.error("upstream sent an oversized line; closing", server=self._server)
            proc.kill()
        code = await proc.wait()
        reason = f"the process exited with code {code}"
        self._fail_pending(reason)
        if self._proc is proc and self._on_close is not None:
            self._on_close(reason)

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("upstream wrote a non-JSON line to stdout", server=self._server, line=line[:200])
            return
        if not isinstance(msg, dict):
            return
        if "method" not in msg and ("result" in msg or "error" in msg):
            future = self._pending.get(msg.get("id"))
            if future is not None and not future.done():
                future.set_result(msg)
            return
        if self.on_message is not None and isinstance(msg.get("method"), str):
            self.on_message(msg)

    async def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
            while line := await proc.stderr.readline():
                log.info("upstream stderr", server=self._server, line=line.decode("utf-8", "replace").rstrip())

    def _fail_pending(self, reason: str) -> None:
        self._closed_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed(reason))


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL it after a grace period."""
    for sig, wait in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, _TERM_GRACE)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except TimeoutError:
            continue
