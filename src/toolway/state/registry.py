"""Registry changes between replicas: registrations and pin approvals.

Their truth is the SQL store every replica shares (PostgreSQL when there are several).
The replica that made a change announces it (`ServerChanged`, `PinApproved`); the others
re-read it from the store and apply it through the registry's own code paths
(`Registry.follow`: the pool is added, replaced, drained or removed exactly as the admin
API does it locally). After a (re)subscription every API-managed server and every pin
is re-read, so a change announced while a replica was cut off is not lost.
"""

from __future__ import annotations

from toolway.registry.service import Registry
from toolway.state.events import PinApproved, ServerChanged
from toolway.state.shared import SharedState


class RegistryFollower:
    """Subscribes `registry` to other replicas' registry changes."""

    def __init__(self, registry: Registry, shared: SharedState) -> None:
        self._registry = registry
        shared.on(ServerChanged, self._server_changed)
        shared.on(PinApproved, self._pin_approved)
        shared.on_resync(self._resync)

    async def _server_changed(self, event: ServerChanged) -> None:
        # In the registry's task group: a removal drains calls in flight, and the change
        # channel must not wait for that.
        self._registry.follow(event.server, event.enabled)

    async def _pin_approved(self, event: PinApproved) -> None:
        await self._registry.reload_pins()

    async def _resync(self) -> None:
        self._registry.follow(None)
        await self._registry.reload_pins()
