"""The state tests run against the real Redis (TOOLWAY_TEST_REDIS) under a prefix of their own,
and the replica tests against a fresh PostgreSQL database shared by two gateways."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from toolway.testing.state import redis_prefix
from toolway.testing.stores import temporary_store

# Importing the SDK server sets the root logger to INFO; keep test output about Toolway.
logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture
async def redis() -> AsyncIterator[tuple[str, str]]:
    """(Redis URL, a fresh prefix); fails (never skips) when Redis is unreachable."""
    async with redis_prefix() as found:
        yield found


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[str]:
    async with temporary_store("postgresql", tmp_path) as url:
        yield url
