"""The gateway's own stream from an upstream, for messages outside any request.

Handshake-era HTTP servers: the session's GET stream. Stateless-era servers: a
`subscriptions/listen` request naming what the gateway wants (list changes the
server declares, and the resources some client subscribed to) — a long POST over
HTTP, an open request over the message transports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from typing import Any

import structlog

from toolway.upstream.client import Negotiated, UpstreamClient
from toolway.upstream.http import HttpChannel

log = structlog.get_logger("toolway.upstream")

_LIST_FLAGS = (("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged"))


def wanted_notifications(capabilities: dict[str, Any], subscriptions: Collection[str]) -> dict[str, Any]:
    """The `subscriptions/listen` filter for a server with these capabilities."""
    wanted: dict[str, Any] = {}
    for key, flag in _LIST_FLAGS:
        if isinstance(capabilities.get(key), dict) and capabilities[key].get("listChanged"):
            wanted[flag] = True
    resources = capabilities.get("resources")
    if subscriptions and isinstance(resources, dict) and resources.get("subscribe"):
        wanted["resourceSubscriptions"] = sorted(subscriptions)
    return wanted


async def listen_once(
    server: str,
    client: UpstreamClient,
    negotiated: Negotiated,
    subscriptions: Collection[str],
    spawn: Callable[[Any], Any] | None,
) -> None:
    """Hold one listening stream open until it ends (or the caller cancels it)."""
    channel = client.channel
    if negotiated.era == "handshake":
        assert isinstance(channel, HttpChannel)
        headers = {"MCP-Protocol-Version": negotiated.protocol_version}
        reason = await channel.listen(client.on_message, None, headers)
        log.info("upstream GET stream ended", server=server, reason=reason)
        return
    wanted = wanted_notifications(negotiated.capabilities, subscriptions)
    if not wanted:
        return
    params: dict[str, Any] = {"notifications": wanted}
    msg_id = client.next_id()
    if isinstance(channel, HttpChannel):
        params, headers = client.dress("subscriptions/listen", params)
        message = {"jsonrpc": "2.0", "id": msg_id, "method": "subscriptions/listen", "params": params}
        reason = await channel.listen(client.on_message, message, headers)
        log.info("upstream listen stream ended", server=server, reason=reason)
        return
    # A message transport: the request stays open while it listens; replacing it must end it upstream too.
    try:
        await client.request("subscriptions/listen", params, msg_id=msg_id)
    except asyncio.CancelledError:
        if spawn is not None:
            spawn(_cancel(client, msg_id))
        raise


async def _cancel(client: UpstreamClient, msg_id: int) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await client.cancel(msg_id, "the gateway replaced this listen stream")
