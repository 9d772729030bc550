"""Traffic control shared by every replica: kill switches, version weights, replica drains.

An operator's change (admin API, `toolway kill|revive|servers weight|servers drain`) is
validated here, written to the state backend's `traffic` hash together with its
announcement, and only then applied to this gateway's copy (`router/traffic.py`, asked
on every call). Other replicas apply the announcement when it arrives, and rebuild their
copy from the hash whenever they (re)subscribe, so a replica that was cut off, or
started later, catches up. When the backend cannot be written, nothing changes anywhere
and the operator gets the reason (`StateUnavailable`, HTTP 503).

Fields of the `traffic` hash (server names cannot hold "/"):

    kill/server/<server>            "1"
    kill/tool/<server>__<tool>      "1"
    weights/<server>                {"v1": 90, "v2": 10}
    drain/<server>/<replica>        "1"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from toolway.observability.events import TrafficChanged
from toolway.router.traffic import Traffic, TrafficError
from toolway.sessions.manager import ConnectionManager
from toolway.sessions.pool import ServerPool
from toolway.state.events import TrafficSet
from toolway.state.shared import SharedState

log = structlog.get_logger("toolway.state")

KEY = "traffic"


class SharedTraffic:
    """Operators' traffic changes, through the state backend; and other replicas' changes, applied here."""

    def __init__(self, traffic: Traffic, manager: ConnectionManager, shared: SharedState) -> None:
        self.traffic = traffic
        self._manager = manager
        self._shared = shared
        self.drains: set[tuple[str, str]] = set()  # (server, replica id)
        shared.on(TrafficSet, self._received)
        shared.on_resync(self._resync)
        # A pool built later (registered, replaced) starts with the drains the replicas share.
        manager.subscribe(self._pool_changed)

    # -- operators' changes (raise TrafficError, StateUnavailable) ---------------------------

    async def kill(self, kind: str, name: str) -> bool:
        """Switch a server or a tool (`server__tool`) off everywhere. False if it already was."""
        self.traffic.validate(kind, name)
        field = f"kill/{kind}/{name}"
        await self._shared.write(KEY, {field: "1"}, TrafficSet(field, "1"))
        return self.traffic.kill(kind, name)

    async def revive(self, kind: str, name: str) -> bool:
        """Undo `kill` everywhere. False if it was not switched off here."""
        self.traffic.validate(kind, name)
        field = f"kill/{kind}/{name}"
        await self._shared.write(KEY, {field: None}, TrafficSet(field, None))
        return self.traffic.revive(kind, name)

    async def set_weights(self, server: str, weights: dict[str, Any], versions: Sequence[str]) -> dict[str, int]:
        """Replace a server's version weights everywhere (`{}` clears them). Returns what was set."""
        clean = Traffic.check_weights(server, weights, versions)
        field, value = f"weights/{server}", orjson.dumps(clean).decode() if clean else None
        await self._shared.write(KEY, {field: value}, TrafficSet(field, value))
        self.traffic.apply_weights(server, clean)
        return clean

    async def drain(self, pool: ServerPool, replica_id: str, on: bool) -> None:
        """Take a replica out of rotation everywhere (`on`), or put it back."""
        field, value = f"drain/{pool.name}/{replica_id}", "1" if on else None
        await self._shared.write(KEY, {field: value}, TrafficSet(field, value))
        self._drain(pool.name, replica_id, on)

    def status(self) -> dict[str, Any]:
        """Where the shared state lives and whether this replica is in step with it (`GET /admin/traffic`)."""
        return {"backend": self._shared.backend.name, "synced": self._shared.synced.is_set()}

    # -- other replicas' changes -------------------------------------------------------------

    async def _received(self, event: TrafficSet) -> None:
        self._apply(event.field, event.value)

    async def _resync(self) -> None:
        """Make this copy the shared one: what the hash holds is set, what it lacks is cleared."""
        fields = await self._shared.read(KEY)
        wanted = {f for f in fields if f.startswith(("kill/", "drain/"))}
        held = {f"kill/server/{s}" for s in self.traffic.killed_servers}
        held |= {f"kill/tool/{t}" for t in self.traffic.killed_tools}
        held |= {f"drain/{s}/{r}" for s, r in self.drains}
        for field in held - wanted:
            self._apply(field, None)
        for server in set(self.traffic.weights) - {f.removeprefix("weights/") for f in fields}:
            self._apply(f"weights/{server}", None)
        for field, value in fields.items():
            self._apply(field, value)

    def _apply(self, field: str, value: str | None) -> None:
        """One field of the hash, as set (`value`) or cleared (None). Idempotent."""
        kind, _, rest = field.partition("/")
        try:
            if kind == "kill":
                target, _, name = rest.partition("/")
                self.traffic.validate(target, name)
                _ = self.traffic.kill(target, name) if value is not None else self.traffic.revive(target, name)
            elif kind == "weights":
                clean = Traffic.check_weights(rest, orjson.loads(value), None) if value is not None else {}
                if self.traffic.weights.get(rest, {}) != clean:
                    self.traffic.apply_weights(rest, clean)
            elif kind == "drain":
                server, _, replica = rest.partition("/")
                self._drain(server, replica, value is not None)
            else:
                raise TrafficError(f"unknown field {field!r}")
        except (TrafficError, orjson.JSONDecodeError, AttributeError) as exc:
            log.warning("ignored a traffic field this version does not understand", field=field, error=str(exc))

    def _drain(self, server: str, replica_id: str, on: bool) -> None:
        key = (server, replica_id)
        if (key in self.drains) == on:
            return
        if on:
            self.drains.add(key)
        else:
            self.drains.discard(key)
        pool = self._manager.get(server)
        replica = pool.replica(replica_id) if pool is not None else None
        if replica is not None:
            replica.draining = on
        if self.traffic.events is not None:
            self.traffic.events.emit(TrafficChanged("drain" if on else "undrain", server, replica_id))

    def _pool_changed(self, pool: ServerPool) -> None:
        for server, replica_id in self.drains:
            if server == pool.name:
                replica = pool.replica(replica_id)
                if replica is not None:
                    replica.draining = True
