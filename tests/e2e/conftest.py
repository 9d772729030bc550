"""Real peers on loopback: fixture upstreams built on the official `mcp` SDK, a gateway on port 0.

Three upstreams, as the core issue asks: Streamable HTTP in each era and one stdio.
Started once per module (each costs about a second), shared by its tests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from toolway.testing import (
    RunningGateway,
    RunningHttpUpstream,
    http_upstream,
    running_gateway,
    stdio_upstream_command,
)

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alpha() -> AsyncIterator[RunningHttpUpstream]:
    """Speaks both eras (the gateway picks 2026-07-28), answers over SSE."""
    async with http_upstream("alpha") as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def beta() -> AsyncIterator[RunningHttpUpstream]:
    """A server from before 2026-07-28: handshake era only, answering over SSE (so it can ask back)."""
    async with http_upstream("beta", era="handshake") as upstream:
        yield upstream


def three_servers(alpha: RunningHttpUpstream, beta: RunningHttpUpstream) -> list[dict[str, Any]]:
    return [
        {"name": "alpha", "transport": "streamable-http", "url": alpha.url},
        {"name": "beta", "transport": "streamable-http", "url": beta.url},
        {"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma")},
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    alpha: RunningHttpUpstream, beta: RunningHttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    store_dir: Path = tmp_path_factory.mktemp("store")
    async with running_gateway(servers=three_servers(alpha, beta), store_dir=store_dir, limits={"page_size": 7}) as gw:
        yield gw
