"""Fake upstream peers on loopback for the channel tests: aiohttp apps on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from toolway.upstream.http import new_client_session

Serve = Callable[[web.Application], AbstractAsyncContextManager[str]]


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1:0; yield its base URL (`http://127.0.0.1:PORT`)."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def serve() -> Serve:
    return _serve


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The gateway's own kind of pooled client."""
    async with new_client_session() as session:
        yield session
