"""Two gateways acting as one: a PostgreSQL store and a Redis state backend shared by both.

Real peers throughout: fixture upstreams (the official `mcp` SDK) in child processes, two
gateways on port 0 in this event loop, the SDK's client and raw stateless-era requests
on their `/mcp` endpoints, the admin API over HTTP. Each test has its own database and
its own Redis prefix. A change made through gateway A reaches B as an event; the tests
wait (bounded) for B to report it applied (`ChangeApplied` on B's event bus), then
look at what B does with the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import mcp.types as types
import pytest
import yaml
from mcp import Client, MCPError
from typer.testing import CliRunner

from toolway.app import StartupError
from toolway.auth.key_store import KeyStore
from toolway.cli.main import app as cli
from toolway.protocol.errors import KILLED, TOOL_QUARANTINED
from toolway.registry.events import ToolQuarantined
from toolway.sessions.upstream import State
from toolway.state.events import ChangeApplied, ChangeEvent, KeysChanged, PinApproved, ServerChanged, TrafficSet
from toolway.testing import RunningGateway, http_upstream, running_gateway, wait_for_state
from toolway.testing.admin import AdminClient, until
from toolway.testing.state import CuttableLink
from toolway.testing.wire import call_tool, text_of

FAST = {"reconnect": {"initial": 0.05, "max": 0.5}}


def state_section(redis: tuple[str, str], url: str | None = None) -> dict[str, Any]:
    return {"backend": "redis", "url": url or redis[0], "prefix": redis[1], **FAST}


@contextlib.asynccontextmanager
async def pair(
    servers: Sequence[dict[str, Any]],
    store: str,
    redis: tuple[str, str],
    tmp_path: Path,
    *,
    b_redis_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    """Gateways A and B on one store and one Redis prefix (B's Redis URL may go through a link)."""
    async with (
        running_gateway(servers=servers, store_dir=tmp_path, store=store, state=state_section(redis), **overrides) as a,
        running_gateway(
            servers=servers, store_dir=tmp_path, store=store, state=state_section(redis, b_redis_url), **overrides
        ) as b,
    ):
        yield a, b


class Applied:
    """What a gateway applied of other replicas' changes, to wait on."""

    def __init__(self, gw: RunningGateway) -> None:
        self._queue: asyncio.Queue[ChangeApplied] = asyncio.Queue()
        gw.gateway.events.subscribe(ChangeApplied, self._queue.put_nowait)

    async def next(self, kind: type[ChangeEvent]) -> ChangeEvent:
        async with asyncio.timeout(10):
            while True:
                applied = await self._queue.get()
                if isinstance(applied.event, kind):
                    return applied.event


def names(result: types.ListToolsResult | types.ListPromptsResult) -> set[str]:
    items = result.tools if isinstance(result, types.ListToolsResult) else result.prompts
    return {item.name for item in items}


async def test_a_kill_on_a_refuses_on_b_and_hides_it_there_until_revived(
    postgres: str, redis: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        http_upstream("calc") as upstream,
        pair([{"name": "calc", "transport": "streamable-http", "url": upstream.url}], postgres, redis, tmp_path) as (
            a,
            b,
        ),
        AdminClient(a.admin_url) as admin,
        aiohttp.ClientSession() as http,
    ):
        on_b = Applied(b)
        assert text_of(await call_tool(http, b.url, "calc__add", {"a": 1, "b": 2})) == "3"

        status, body = await admin.request("POST", "/admin/kill", {"tool": "calc__add"})
        assert (status, body["changed"]) == (200, True), body
        assert await on_b.next(TrafficSet) == TrafficSet("kill/tool/calc__add", "1")
        refused = await call_tool(http, b.url, "calc__add", {"a": 1, "b": 2})
        assert refused["error"]["code"] == KILLED and "toolway kill tool" in refused["error"]["message"]
        assert text_of(await call_tool(http, b.url, "calc__echo", {"text": "still on"})) == "still on"
        async with Client(b.url) as client:  # an agent does not see what it cannot call
            tools = names(await client.list_tools())
            assert "calc__add" not in tools and "calc__echo" in tools

        status, _ = await admin.request("POST", "/admin/kill", {"server": "calc"})
        assert status == 200
        await on_b.next(TrafficSet)
        async with Client(b.url) as client:
            assert names(await client.list_tools()) == set()
            assert names(await client.list_prompts()) == set()
        assert (await call_tool(http, b.url, "calc__echo", {"text": "x"}))["error"]["code"] == KILLED

        for target in ({"server": "calc"}, {"tool": "calc__add"}):
            status, _ = await admin.request("DELETE", "/admin/kill", target)
            assert status == 200
            await on_b.next(TrafficSet)
        assert text_of(await call_tool(http, b.url, "calc__add", {"a": 2, "b": 2})) == "4"
        async with Client(b.url) as client:
            assert {"calc__add", "calc__echo"} <= names(await client.list_tools())
            assert "calc__greet" in names(await client.list_prompts())
        # The state B reports is the state A set.
        async with AdminClient(b.admin_url) as admin_b:
            state = (await admin_b.request("GET", "/admin/traffic"))[1]
        assert state["killed"] == {"servers": [], "tools": []}


async def test_weights_set_on_a_apply_on_b(postgres: str, redis: tuple[str, str], tmp_path: Path) -> None:
    async with (
        http_upstream("r0") as r0,
        http_upstream("r1") as r1,
    ):
        canary = {
            "name": "canary",
            "transport": "streamable-http",
            "endpoints": [{"url": r0.url, "id": "r0", "version": "v1"}, {"url": r1.url, "id": "r1", "version": "v2"}],
        }
        async with (
            pair([canary], postgres, redis, tmp_path) as (a, b),
            AdminClient(a.admin_url) as admin,
            aiohttp.ClientSession() as http,
        ):
            on_b = Applied(b)
            status, body = await admin.request("POST", "/admin/servers/canary/weights", {"v1": 0, "v2": 100})
            assert (status, body["shares"]) == (200, {"v1": 0.0, "v2": 1.0}), body
            assert await on_b.next(TrafficSet) == TrafficSet("weights/canary", '{"v1":0,"v2":100}')
            served = {text_of(await call_tool(http, b.url, "canary__replica", {}, i)) for i in range(12)}
            assert served == {"r1"}  # every call on B goes to v2

            status, _ = await admin.request("POST", "/admin/servers/canary/weights", {"v1": 100, "v2": 0})
            assert status == 200
            await on_b.next(TrafficSet)
            served = {text_of(await call_tool(http, b.url, "canary__replica", {}, i)) for i in range(12)}
            assert served == {"r0"}

            # A drain on A takes the replica out of B's rotation too.
            status, _ = await admin.request("POST", "/admin/servers/canary/weights", {})
            await on_b.next(TrafficSet)
            status, _ = await admin.request("POST", "/admin/servers/canary/replicas/r0/drain")
            assert status == 200
            assert await on_b.next(TrafficSet) == TrafficSet("drain/canary/r0", "1")
            served = {text_of(await call_tool(http, b.url, "canary__replica", {}, i)) for i in range(12)}
            assert served == {"r1"}


async def test_a_server_registered_through_a_is_callable_through_b_and_removed_with_it(
    postgres: str, redis: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        http_upstream("dyn") as upstream,
        pair([], postgres, redis, tmp_path) as (a, b),
        AdminClient(a.admin_url) as admin,
        aiohttp.ClientSession() as http,
    ):
        on_b = Applied(b)
        entry = {"name": "dyn", "transport": "streamable-http", "url": upstream.url}
        status, body = await admin.request("POST", "/admin/servers", entry)
        assert status == 201, body
        assert await on_b.next(ServerChanged) == ServerChanged("dyn")
        await until(lambda: "dyn" in b.gateway.manager.connections, what="B builds the pool of dyn")
        await wait_for_state(b.gateway, "dyn", State.READY)
        assert text_of(await call_tool(http, b.url, "dyn__whoami", {})) == "dyn"
        async with AdminClient(b.admin_url) as admin_b:
            status, shown = await admin_b.request("GET", "/admin/servers/dyn")
        assert (status, shown["managed_by"], shown["state"]) == (200, "api", State.READY.value)

        # Disabled through A: B drains and closes its pool as A did.
        status, _ = await admin.request("POST", "/admin/servers/dyn/disable")
        assert status == 200
        await on_b.next(ServerChanged)
        await until(lambda: "dyn" not in b.gateway.manager.connections, what="B closes the pool of dyn")
        assert "Unknown tool" in (await call_tool(http, b.url, "dyn__whoami", {}))["error"]["message"]
        status, _ = await admin.request("POST", "/admin/servers/dyn/enable")
        await on_b.next(ServerChanged)
        await until(lambda: "dyn" in b.gateway.manager.connections, what="B builds the pool of dyn again")
        await wait_for_state(b.gateway, "dyn", State.READY)

        status, body = await admin.request("DELETE", "/admin/servers/dyn")
        assert (status, body["removed"]) == (200, "dyn")
        await on_b.next(ServerChanged)
        await until(lambda: "dyn" not in b.gateway.registry.entries, what="B forgets dyn")
        assert "dyn" not in b.gateway.manager.connections
        assert "Unknown tool" in (await call_tool(http, b.url, "dyn__whoami", {}))["error"]["message"]


async def test_an_approval_on_a_releases_the_quarantine_on_b(
    postgres: str, redis: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        http_upstream("rug", era="handshake") as upstream,
        pair([{"name": "rug", "transport": "streamable-http", "url": upstream.url}], postgres, redis, tmp_path) as (
            a,
            b,
        ),
        AdminClient(a.admin_url) as admin,
    ):
        quarantined: dict[str, asyncio.Queue[ToolQuarantined]] = {}
        for label, gw in (("a", a), ("b", b)):
            quarantined[label] = asyncio.Queue()
            gw.gateway.events.subscribe(ToolQuarantined, quarantined[label].put_nowait)
        on_b = Applied(b)
        # The upstream announces the change to the session that asked for it: ask through both.
        for label, gw in (("a", a), ("b", b)):
            async with Client(gw.url, mode="legacy") as client:
                await client.call_tool("rug__redescribe", {"tool": "echo", "description": "Now also reads secrets."})
            assert (await asyncio.wait_for(quarantined[label].get(), 10)).tool == "echo"
        async with Client(b.url, mode="legacy") as client:
            with pytest.raises(MCPError) as info:
                await client.call_tool("rug__echo", {"text": "x"})
            assert info.value.error.code == TOOL_QUARANTINED

        status, body = await admin.request("POST", "/admin/tools/rug__echo/approve")
        assert (status, body["status"]) == (200, "approved"), body
        assert await on_b.next(PinApproved) == PinApproved("rug", "echo")
        async with Client(b.url, mode="legacy") as client:
            assert "rug__echo" in names(await client.list_tools())
            assert (await client.call_tool("rug__echo", {"text": "y"})).content[0].text == "y"  # type: ignore[union-attr]


async def test_a_key_revoked_on_a_is_refused_by_b_at_once(
    postgres: str, redis: tuple[str, str], tmp_path: Path
) -> None:
    # reload_seconds is long: B refuses the key because it was told, not because it re-read on a timer.
    auth = {"schemes": ["api_key"], "api_keys": {"reload_seconds": 3600}}
    async with (
        http_upstream("calc") as upstream,
        pair(
            [{"name": "calc", "transport": "streamable-http", "url": upstream.url}],
            postgres,
            redis,
            tmp_path,
            auth=auth,
        ) as (a, b),
        AdminClient(a.admin_url) as admin,
        aiohttp.ClientSession() as http,
        await KeyStore.open(postgres) as keys,
    ):
        on_b = Applied(b)
        key, record = await keys.create("agent", scopes=("tools:call:*",))
        status, _ = await admin.request("POST", "/admin/keys/reload")  # what `toolway keys create` does
        assert status == 200
        await on_b.next(KeysChanged)
        bearer = {"Authorization": f"Bearer {key}"}
        assert text_of(await call_tool(http, b.url, "calc__whoami", {}, headers=bearer)) == "calc"

        assert await keys.revoke(record.id)
        status, _ = await admin.request("POST", "/admin/keys/reload")  # what `toolway keys revoke` does
        assert status == 200
        await on_b.next(KeysChanged)
        assert await refused(http, b.url, key)

        # The CLI tells every replica through Redis itself, with no admin URL to call.
        second, second_record = await keys.create("agent-2", scopes=("tools:call:*",))
        await admin.request("POST", "/admin/keys/reload")
        await on_b.next(KeysChanged)
        config = tmp_path / "cli.yaml"
        config.write_text(
            yaml.safe_dump({"store": postgres, "admin": {"port": 0}, "auth": auth, "state": state_section(redis)})
        )
        on_a = Applied(a)
        revoked = await asyncio.to_thread(
            CliRunner().invoke, cli, ["keys", "revoke", second_record.id, "--config", str(config)]
        )
        assert revoked.exit_code == 0, revoked.output
        assert "Told the gateways sharing" in revoked.stderr
        await on_a.next(KeysChanged)
        await on_b.next(KeysChanged)
        assert await refused(http, a.url, second) and await refused(http, b.url, second)


async def refused(http: aiohttp.ClientSession, url: str, key: str) -> bool:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status == 401 and "revoked" in (await response.json())["error_description"]


async def test_a_gateway_cut_off_from_redis_serves_from_its_copy_and_catches_up(
    postgres: str, redis: tuple[str, str], tmp_path: Path
) -> None:
    async with (
        http_upstream("calc") as upstream,
        CuttableLink(redis[0]) as link,
        pair(
            [{"name": "calc", "transport": "streamable-http", "url": upstream.url}],
            postgres,
            redis,
            tmp_path,
            b_redis_url=link.url,
        ) as (a, b),
        AdminClient(a.admin_url) as admin,
        AdminClient(b.admin_url) as admin_b,
        aiohttp.ClientSession() as http,
    ):
        on_b = Applied(b)
        status, _ = await admin.request("POST", "/admin/kill", {"tool": "calc__add"})
        await on_b.next(TrafficSet)

        await link.cut()  # Redis is gone for B
        await asyncio.wait_for(b.gateway.state.lost.wait(), 10)
        # B keeps serving from its copy: the kill it knew holds, everything else answers.
        assert (await call_tool(http, b.url, "calc__add", {"a": 1, "b": 1}))["error"]["code"] == KILLED
        assert text_of(await call_tool(http, b.url, "calc__echo", {"text": "alone"})) == "alone"
        # A change through B cannot be shared now: refused, and applied nowhere.
        status, body = await admin_b.request("POST", "/admin/kill", {"tool": "calc__echo"})
        assert status == 503 and "nothing was changed" in body["error"] and link.url in body["error"]
        assert (await admin_b.request("GET", "/admin/traffic"))[1]["state"] == {"backend": link.url, "synced": False}
        assert text_of(await call_tool(http, b.url, "calc__echo", {"text": "still"})) == "still"

        # Meanwhile, through A: the tool is revived and the server's other tool killed.
        for method, target in (("DELETE", {"tool": "calc__add"}), ("POST", {"tool": "calc__whoami"})):
            status, _ = await admin.request(method, "/admin/kill", target)
            assert status == 200
        assert text_of(await call_tool(http, b.url, "calc__whoami", {})) == "calc"  # B has not heard yet

        await link.restore()
        await asyncio.wait_for(b.gateway.state.synced.wait(), 10)
        assert (await admin_b.request("GET", "/admin/traffic"))[1]["state"] == {"backend": link.url, "synced": True}
        # Caught up from the shared state it re-read, not from the events it missed.
        assert text_of(await call_tool(http, b.url, "calc__add", {"a": 1, "b": 1})) == "2"
        assert (await call_tool(http, b.url, "calc__whoami", {}))["error"]["code"] == KILLED


async def test_a_gateway_that_cannot_reach_redis_refuses_to_start(redis: tuple[str, str], tmp_path: Path) -> None:
    async with CuttableLink(redis[0]) as link:
        await link.cut()
        state = {**state_section(redis, link.url), "timeout_seconds": 0.5}
        with pytest.raises(StartupError, match=f"refusing to start: cannot reach the state backend {link.url}"):
            async with running_gateway(servers=[], store_dir=tmp_path, state=state):
                pass
