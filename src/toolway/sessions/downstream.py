"""Handshake-era sessions that agents open with `initialize`.

In process memory for now (the embedded state backend): ids are 128-bit random,
idle sessions expire, and the table is bounded — when full, the session idle the
longest is dropped, and its client gets the spec's 404 and initializes again.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from toolway.clock import Clock


@dataclass(slots=True)
class DownstreamSession:
    id: str
    path: str  # the endpoint it was opened on; it is valid there only
    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    last_seen: float
    initialized: bool = False


class SessionTable:
    def __init__(self, clock: Clock, *, max_sessions: int, idle_seconds: float) -> None:
        self._clock = clock
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
    ) -> DownstreamSession:
        self._expire()
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        session = DownstreamSession(
            id=secrets.token_hex(16),
            path=path,
            protocol_version=protocol_version,
            client_capabilities=capabilities,
            client_info=client_info,
            last_seen=self._clock.now(),
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, path: str) -> DownstreamSession | None:
        """The live session with this id on this endpoint, touched; None if unknown, expired or elsewhere."""
        session = self._sessions.get(session_id)
        if session is None or session.path != path:
            return None
        now = self._clock.now()
        if now - session.last_seen > self._idle:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str, path: str) -> bool:
        """End a live session; False if it is unknown, expired or belongs to another endpoint."""
        if self.get(session_id, path) is None:
            return False
        del self._sessions[session_id]
        return True

    def _expire(self) -> None:
        cutoff = self._clock.now() - self._idle
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_seen >= cutoff:
                break
            self._sessions.popitem(last=False)
