"""An incremental Server-Sent Events parser (the WHATWG event-stream format)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    event: str
    data: str
    id: str | None


class SSEParser:
    """Feed bytes in any chunking; get complete events out.

    Raises:
        ValueError: one event grew past `max_event_bytes` (a hostile or broken upstream).
    """

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_event_bytes
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._size = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            cut = self._line_end()
            if cut is None:
                break
            end, skip = cut
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) + self._size > self._max:
            raise ValueError(f"an SSE event exceeded {self._max} bytes")
        return events

    def _line_end(self) -> tuple[int, int] | None:
        buf = self._buffer
        lf, cr = buf.find(b"\n"), buf.find(b"\r")
        if cr == -1 or (lf != -1 and lf < cr):
            return None if lf == -1 else (lf, 1)
        if cr + 1 == len(buf):
            return None  # wait: this CR may be the first half of CRLF
        return cr, 2 if buf[cr + 1] == 0x0A else 1

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = Event(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._size = "", [], 0
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
            self._size += len(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        return None
