"""Talk to a running gateway's admin API from asyncio tests.

async with AdminClient(gw.admin_url) as admin:
    status, body = await admin.request("POST", "/admin/servers", {...})
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
import orjson

__all__ = ["AdminClient", "until"]


class AdminClient:
    """A small JSON client for the admin listener (``RunningGateway.admin_url``)."""

    def __init__(self, base_url: str | None) -> None:
        if base_url is None:
            raise ValueError("the gateway runs without an admin listener")
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    async def request(
        self, method: str, path: str, body: Any = None, *, base_url: str | None = None
    ) -> tuple[int, Any]:
        """(HTTP status, the body decoded from JSON, or as text when it is not JSON).

        ``base_url``: another listener (the agent port).
        """
        assert self._http is not None, "use `async with AdminClient(...)`"
        url = (base_url or self.base_url).rstrip("/") + path
        async with self._http.request(method, url, json=body) as response:
            text = await response.text()
            try:
                return response.status, orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                return response.status, text


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:  # noqa: ASYNC109
    """Wait (bounded) until ``predicate()`` holds, looking again every few milliseconds.

    Raises:
        TimeoutError: naming ``what``.
    """
    try:
        async with asyncio.timeout(timeout):
            # For conditions nothing announces (an entry leaving a dict); prefer an event when one exists.
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise TimeoutError(f"{what} did not hold within {timeout:g}s") from None
