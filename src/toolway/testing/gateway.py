"""Run a whole gateway in the test's own event loop, on port 0, and talk to it.

async with running_gateway(servers=[...], tmp_path=tmp_path) as gw:
    async with mcp.Client(gw.url) as client: ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolway.app import Gateway
from toolway.clock import Clock, WallClock
from toolway.config.model import GatewayConfig
from toolway.lifetime import running
from toolway.sessions.upstream import State
from toolway.state.backend import StateBackend

__all__ = ["RunningGateway", "gateway_config", "running_gateway", "wait_for_state"]


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str  # http://127.0.0.1:PORT/mcp
    admin_url: str | None
    config: GatewayConfig

    def server_url(self, name: str) -> str:
        """The single-server endpoint `/servers/<name>/mcp`."""
        return self.url.removesuffix("/mcp") + f"/servers/{name}/mcp"


def gateway_config(servers: Sequence[Mapping[str, Any]], store_dir: Path, **overrides: Any) -> GatewayConfig:
    """A config on port 0 (agent and admin) with the store in `store_dir`."""
    data: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "store": f"sqlite:///{store_dir / 'toolway.db'}",
        "servers": list(servers),
        "shutdown": {"drain_seconds": 5},
    }
    data.update(overrides)
    return GatewayConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running_gateway(
    config: GatewayConfig | None = None,
    *,
    servers: Sequence[Mapping[str, Any]] = (),
    store_dir: Path | None = None,
    clock: Clock | None = None,
    wall_clock: WallClock | None = None,
    state_backend: StateBackend | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningGateway]:
    """Start a gateway (from `config`, or built with `gateway_config`) and stop it on exit.

    `state_backend`: a `MemoryBackend` shared by several gateways in this process acts as Redis would.
    """
    if config is None:
        if store_dir is None:
            raise TypeError("pass a config, or servers and a store_dir")
        config = gateway_config(servers, store_dir, **overrides)
    async with running(config, clock=clock, wall_clock=wall_clock, state_backend=state_backend) as (
        gateway,
        endpoints,
    ):
        yield RunningGateway(gateway, endpoints.url, endpoints.admin_url, config)


async def wait_for_state(gateway: Gateway, server: str, state: State, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait (bounded) until the gateway's connection to `server` is in `state`.

    Raises:
        TimeoutError: it did not get there in time.
    """
    conn = gateway.manager.get(server)
    if conn is None:
        raise KeyError(server)
    changed = asyncio.Event()
    unsubscribe = gateway.manager.subscribe(lambda c: changed.set() if c is conn else None)
    try:
        async with asyncio.timeout(timeout):
            while conn.state is not state:
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()
