"""Session affinity: a client's handshake-era session stays on the replica it first used.

The gateway keeps one upstream session per replica, and a stateful server keeps a
client's state in it. So a downstream session is pinned to (replica, epoch): the
replica, and which of its connections. When that replica is gone or has
reconnected (a new upstream session: the state is lost), the pin is dropped and
the client is told to start a new session (HTTP 404, as the Streamable HTTP
transport of MCP 2025-11-25 prescribes for a terminated session), never silently
moved to a replica that does not know it.
"""

from __future__ import annotations

from collections import OrderedDict


class Affinity:
    """Pins by downstream session id, bounded: the session used the longest ago is forgotten first."""

    def __init__(self, max_sessions: int) -> None:
        self._max = max_sessions
        self._pins: OrderedDict[str, dict[str, tuple[str, int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, session: str, server: str) -> tuple[str, int] | None:
        """(replica id, epoch) this session is pinned to for `server`, if any."""
        pins = self._pins.get(session)
        if pins is None:
            return None
        self._pins.move_to_end(session)
        return pins.get(server)

    def pin(self, session: str, server: str, replica: str, epoch: int) -> None:
        pins = self._pins.get(session)
        if pins is None:
            pins = self._pins[session] = {}
            while len(self._pins) > self._max:
                self._pins.popitem(last=False)
        pins[server] = (replica, epoch)

    def unpin(self, session: str, server: str) -> None:
        pins = self._pins.get(session)
        if pins is not None:
            pins.pop(server, None)

    def forget(self, session: str) -> None:
        """The downstream session ended."""
        self._pins.pop(session, None)
