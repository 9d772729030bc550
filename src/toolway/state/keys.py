"""API key changes between replicas: a key created or revoked anywhere is (un)usable everywhere at once.

The replica that hears of a change (`POST /admin/keys/reload`, which `toolway keys
create|revoke` calls; or the CLI itself, publishing to Redis) announces `KeysChanged`;
every other replica reloads its keys from the store then, not `reload_seconds` later.
"""

from __future__ import annotations

import structlog

from toolway.auth.api_key import ApiKeys
from toolway.registry.store import StoreError
from toolway.state.events import KeysChanged
from toolway.state.shared import SharedState

log = structlog.get_logger("toolway.state")


class KeysFollower:
    """Reloads `keys` whenever another replica says they changed, and after every resync."""

    def __init__(self, keys: ApiKeys, shared: SharedState) -> None:
        self._keys = keys
        shared.on(KeysChanged, self._changed)
        shared.on_resync(self._reload)

    async def _changed(self, event: KeysChanged) -> None:
        await self._reload()

    async def _reload(self) -> None:
        try:
            count = await self._keys.reload()
        except StoreError as exc:
            log.warning("cannot reload API keys another replica changed; keeping the ones loaded", error=str(exc))
            return
        log.info("API keys reloaded from the store", keys=count)
