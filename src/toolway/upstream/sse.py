"""An incremental Server-Sent Events parser (the WHATWG event-stream format)."""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class Event:
    event: str
    data: str
    id: str | None


class SSEParser:
    """Feed bytes in any chunking; get complete events out.

    Raises:
        ValueError: one event (its lines as received, in bytes) grew past
            `max_event_bytes` — a hostile or broken upstream.
    """

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_event_bytes
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._size = 0  # bytes of the event being assembled
        self._started = False
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it

    def feed(self, chunk: bytes) -> list[Event]:
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buffer + chunk
        if not self._started and buf:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buffer = buf
                return []
            self._started = True
            buf = buf.removeprefix(_BOM)
        events: list[Event] = []
        start = 0
        while True:
            lf, cr = buf.find(b"\n", start), buf.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            elif cr + 1 == len(buf):
                end, nxt = cr, cr + 1
                self._skip_lf = True
            else:
                end, nxt = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            self._grow(nxt - start)
            event = self._line(buf[start:end].decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buf[start:]
        if self._size + len(self._buffer) > self._max:
            raise ValueError(f"an SSE event exceeded {self._max} bytes")
        return events

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > self._max:
            raise ValueError(f"an SSE event exceeded {self._max} bytes")

    def _line(self, line: str) -> Event | None:
        if not line:
            data, event, self._data, self._event, self._size = self._data, self._event, [], "", 0
            if not data:
                return None  # WHATWG: an empty data buffer dispatches nothing.
            return Event(event or "message", "\n".join(data), self._id)
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None
