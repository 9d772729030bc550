"""Session-level notifications, fanned out to the clients that asked for them.

Listeners are handshake-era sessions (their GET stream) and stateless-era
`subscriptions/listen` streams. Resource subscriptions are counted per URI, so the
gateway subscribes upstream once for the first listener and unsubscribes after
the last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolway.protocol.logging_levels import admits
from toolway.sessions.streams import EventStream

_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
LIST_CHANGED = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)


@dataclass
class Listener:
    id: str
    stream: EventStream
    list_changed: frozenset[str] = frozenset(LIST_CHANGED)  # methods it wants
    log_level: str | None = None
    uris: set[str] = field(default_factory=set)
    # A stateless-era listen stream: its notifications name it in `_meta` (2026-07-28).
    subscription_id: Any = None
    scope: str | None = None  # on /servers/<name>/mcp: only that server's news


class Hub:
    def __init__(self, max_elicitations: int = 10_000) -> None:
        self._listeners: dict[str, Listener] = {}
        self._by_uri: dict[str, set[str]] = {}
        # URL-mode elicitations relayed to a client, by id: their completion goes to that client only.
        self._elicitations: dict[str, EventStream] = {}
        self._max_elicitations = max_elicitations

    def expect_elicitation(self, elicitation_id: str, stream: EventStream) -> None:
        while len(self._elicitations) >= self._max_elicitations:
            del self._elicitations[next(iter(self._elicitations))]
        self._elicitations[elicitation_id] = stream

    def __len__(self) -> int:
        return len(self._listeners)

    def add(self, listener: Listener) -> None:
        self._listeners[listener.id] = listener

    def get(self, listener_id: str) -> Listener | None:
        return self._listeners.get(listener_id)

    def remove(self, listener_id: str) -> list[str]:
        """Drop a listener; returns the URIs nobody is subscribed to any more."""
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            return []
        return [uri for uri in list(listener.uris) if self.unsubscribe(listener_id, uri, listener)]

    def subscribe(self, listener_id: str, uri: str) -> bool:
        """True when this is the URI's first subscriber (subscribe upstream)."""
        listener = self._listeners.get(listener_id)
        if listener is None:
            return False
        listener.uris.add(uri)
        subscribers = self._by_uri.setdefault(uri, set())
        first = not subscribers
        subscribers.add(listener_id)
        return first

    def unsubscribe(self, listener_id: str, uri: str, listener: Listener | None = None) -> bool:
        """True when this was the URI's last subscriber (unsubscribe upstream)."""
        listener = listener or self._listeners.get(listener_id)
        if listener is not None:
            listener.uris.discard(uri)
        subscribers = self._by_uri.get(uri)
        if subscribers is None or listener_id not in subscribers:
            return False
        subscribers.discard(listener_id)
        if subscribers:
            return False
        del self._by_uri[uri]
        return True

    def subscribed(self) -> set[str]:
        return set(self._by_uri)

    def publish(self, message: dict[str, Any], origin: str | None = None) -> None:
        """Deliver one session-level notification (from server `origin`) to every listener that wants it."""
        method = message.get("method")
        raw = message.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method in LIST_CHANGED:
            targets = [lst for lst in self._listeners.values() if method in lst.list_changed]
        elif method == "notifications/resources/updated":
            ids = self._by_uri.get(str(params.get("uri")), set())
            targets = [self._listeners[i] for i in ids if i in self._listeners]
        elif method == "notifications/message":
            targets = [lst for lst in self._listeners.values() if admits(lst.log_level, params.get("level"))]
        elif method == "notifications/elicitation/complete":
            stream = self._elicitations.pop(str(params.get("elicitationId")), None)
            if stream is not None:
                stream.push(message)
            return
        else:
            return
        if origin is not None:
            targets = [lst for lst in targets if lst.scope is None or lst.scope == origin]
        # The upstream's own listen id (the gateway's subscription there) means nothing downstream.
        raw_meta = params.get("_meta")
        meta = {k: v for k, v in raw_meta.items() if k != _SUBSCRIPTION_ID} if isinstance(raw_meta, dict) else {}
        plain = {k: v for k, v in params.items() if k != "_meta"}
        if meta:
            plain["_meta"] = meta
        for listener in targets:
            if listener.subscription_id is None:
                listener.stream.push({**message, "params": plain})
            else:
                tagged = {**meta, _SUBSCRIPTION_ID: listener.subscription_id}
                listener.stream.push({**message, "params": {**plain, "_meta": tagged}})
