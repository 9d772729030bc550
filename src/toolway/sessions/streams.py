"""Event streams: the messages a client is sent before (or instead of) a final answer.

An `EventStream` is written by the protocol layer (progress, log messages, server
requests, the final response) and read by an HTTP connection as SSE. It keeps a
bounded history, so a handshake-era client that lost its connection can come back
with `Last-Event-ID` and get exactly the events it missed, then the rest live
(Streamable HTTP resumability, MCP 2025-11-25).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

import orjson

_ids = itertools.count(1)


class EventStream:
    """One SSE stream's events, in order. Written synchronously; read by any number of readers."""

    def __init__(self, *, with_ids: bool, history: int = 1024) -> None:
        self.id = f"s{next(_ids)}"
        self.with_ids = with_ids
        self._history: deque[tuple[int, bytes]] = deque(maxlen=history)  # (seq, JSON body)
        self._seq = 0
        self.closed = False
        self._changed = asyncio.Event()
        self.reader = 0  # bumped when a new reader takes over, so the old one stops
        self.owner: asyncio.Task[Any] | None = None  # cancelled if a stateless-era client hangs up
        self.status = 200  # HTTP status when the answer goes out as plain JSON
        self.session_id: str | None = None  # a new handshake-era session, for its header

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def empty(self) -> bool:
        return self._seq == 0

    def push(self, message: dict[str, Any]) -> None:
        """Append one JSON-RPC message. Never blocks; a closed stream drops it."""
        if self.closed:
            return
        self._seq += 1
        self._history.append((self._seq, orjson.dumps(message)))
        self._changed.set()

    def only_body(self) -> bytes | None:
        """The single message's JSON, when the stream holds exactly one (the plain-JSON answer)."""
        return self._history[0][1] if self._seq == 1 and self._history else None

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def priming(self, retry_ms: int) -> bytes:
        """The first event: an id to resume from and how soon to retry (MCP 2025-11-25)."""
        if not self.with_ids:
            return b""
        return b"id: %s-0\nretry: %d\ndata: \n\n" % (self.id.encode(), retry_ms)

    def bodies_after(self, seq: int) -> tuple[list[bytes], int]:
        """JSON bodies newer than `seq` and the new position (for transports without SSE framing)."""
        return [body for s, body in self._history if s > seq], self._seq

    def after(self, seq: int) -> tuple[list[bytes], int, bool]:
        """SSE frames newer than `seq`, the new position, and whether some were already dropped."""
        sid = self.id.encode()
        frames = [
            (b"id: %s-%d\nevent: message\ndata: %s\n\n" % (sid, s, body))
            if self.with_ids
            else (b"event: message\ndata: %s\n\n" % body)
            for s, body in self._history
            if s > seq
        ]
        lost = bool(self._history) and self._history[0][0] > seq + 1
        return frames, self._seq, lost

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - keep-alive interval
        """Wait for a new event or the end; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    def wake(self) -> None:
        self._changed.set()


def parse_event_id(value: str) -> tuple[str, int] | None:
    """`s12-34` -> ("s12", 34); None for anything else."""
    stream, sep, seq = value.rpartition("-")
    if not sep or not stream or not (seq.isascii() and seq.isdigit()):
        return None
    return stream, int(seq)
