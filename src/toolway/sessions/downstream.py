"""Handshake-era sessions that agents open with `initialize`.

In process memory for now (the embedded state backend): ids are 128-bit random,
idle sessions expire, and the table is bounded — when full, the session idle the
longest is dropped, and its client gets the spec's 404 and initializes again.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolway.clock import Clock
from toolway.sessions.owner import tagged
from toolway.sessions.streams import EventStream

_MAX_STREAMS = 32  # streams remembered per session for Last-Event-ID resumption


@dataclass(slots=True)
class DownstreamSession:
    id: str
    path: str  # the endpoint it was opened on; it is valid there only
    scope: str | None  # the server of a single-server endpoint
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    last_seen: float
    principal: str | None = None  # "<scheme>:<subject>" that opened it; only it may use it
    initialized: bool = False
    log_level: str | None = None  # set by logging/setLevel; None: whatever the servers send
    # Server->client requests awaiting the client's answer, by the id we gave them.
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    # The client's requests in progress, by its id, so notifications/cancelled can stop them.
    inflight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    standalone: EventStream = field(default_factory=lambda: EventStream(with_ids=True))
    streams: OrderedDict[str, EventStream] = field(default_factory=OrderedDict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_request_id(self) -> str:
        return f"tw-{next(self._ids)}"

    def remember(self, stream: EventStream) -> None:
        """Keep a POST's stream for resumption; the oldest is forgotten past the bound."""
        self.streams[stream.id] = stream
        while len(self.streams) > _MAX_STREAMS:
            self.streams.popitem(last=False)

    def stream(self, stream_id: str) -> EventStream | None:
        if stream_id == self.standalone.id:
            return self.standalone
        return self.streams.get(stream_id)

    def close(self) -> None:
        """The session is over: its streams end, its pending questions fail."""
        self.standalone.close()
        for stream in self.streams.values():
            stream.close()
        for future in self.pending.values():
            if not future.done():
                future.cancel()
        for task in self.inflight.values():
            task.cancel()


class SessionTable:
    def __init__(
        self,
        clock: Clock,
        *,
        max_sessions: int,
        idle_seconds: float,
        on_end: Callable[[DownstreamSession], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_end = on_end
        self._max = max_sessions
        self._idle = idle_seconds
        self._sessions: OrderedDict[str, DownstreamSession] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self,
        path: str,
        protocol_version: str,
        capabilities: dict[str, Any],
        client_info: dict[str, Any] | None,
        scope: str | None = None,
        principal: str | None = None,
    ) -> DownstreamSession:
        self._expire()
        while len(self._sessions) >= self._max:
            self._ended(self._sessions.popitem(last=False)[1])
        session = DownstreamSession(
            id=tagged(secrets.token_hex(16)),
            path=path,
            scope=scope,
            protocol_version=protocol_version,
            client_capabilities=capabilities,
            client_info=client_info,
            last_seen=self._clock.now(),
            principal=principal,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, path: str, principal: str | None = None) -> DownstreamSession | None:
        """The live session with this id on this endpoint, touched; None if unknown, expired, elsewhere,
        or opened by another principal (the spec's 404: as if it did not exist)."""
        session = self._sessions.get(session_id)
        if session is None or session.path != path or session.principal != principal:
            return None
        now = self._clock.now()
        if now - session.last_seen > self._idle:
            self._ended(self._sessions.pop(session_id))
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str, path: str, principal: str | None = None) -> bool:
        """End a live session; False if it is unknown, expired, elsewhere or another principal's."""
        if self.get(session_id, path, principal) is None:
            return False
        self._ended(self._sessions.pop(session_id))
        return True

    def all(self) -> list[DownstreamSession]:
        return list(self._sessions.values())

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self._ended(session)
        self._sessions.clear()

    def _ended(self, session: DownstreamSession) -> None:
        session.close()
        if self._on_end is not None:
            self._on_end(session)

    def _expire(self) -> None:
        cutoff = self._clock.now() - self._idle
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_seen >= cutoff:
                break
            self._ended(self._sessions.popitem(last=False)[1])
