"""Every registry test runs on both stores: a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from toolway.testing.stores import BACKENDS, Backend, temporary_store


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    backend: Backend = request.param
    async with temporary_store(backend, tmp_path) as url:
        yield url
