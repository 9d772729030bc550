"""Streams on the wire: progress isolation, resumption, keep-alives, cancellation, subscriptions.

Rules from the MCP transport specs: Streamable HTTP (2025-11-25: event ids, priming event,
`Last-Event-ID` resumption, GET streams, cancellation by notification) and 2026-07-28
(closing a response stream cancels its request; `subscriptions/listen`; multi round-trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from toolway.sessions.upstream import UpstreamConnection
from toolway.testing import RunningGateway, running_gateway, stdio_upstream_command
from toolway.testing.wire import events, initialize, messages, modern_request, session_headers, tool_call
from toolway.upstream.sse import Event

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def collect(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return messages([e async for e in events(resp)])


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - bounded poll of gateway state the test doesn't own
            await asyncio.sleep(0.01)


def conn(gateway: RunningGateway, name: str) -> UpstreamConnection:
    found = gateway.gateway.manager.get(name)
    assert found is not None
    return found


# --- progress isolation (the "done when") ------------------------------------------------


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_same_ids_and_tokens_never_cross_stateless(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    async def run(steps: int) -> list[dict[str, Any]]:
        body, headers = modern_request(
            "tools/call",
            {
                "name": f"{server}__progress",
                "arguments": {"steps": steps, "delay": 0.02},
                "_meta": {"progressToken": "p"},
            },
        )
        async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as resp:
            return await collect(resp)

    three, five = await asyncio.gather(run(3), run(5))
    for got, steps in ((three, 3), (five, 5)):
        progress = [m["params"] for m in got if m.get("method") == "notifications/progress"]
        assert [p["progress"] for p in progress] == list(range(1, steps + 1))
        assert {p["progressToken"] for p in progress} == {"p"}
        final = got[-1]
        assert final["id"] == 1
        assert final["result"]["content"][0]["text"] == f"{server} counted {steps}"


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_same_ids_and_tokens_never_cross_sessions(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    sessions = [await initialize(http, gateway.url), await initialize(http, gateway.url)]

    async def run(session: str, steps: int) -> list[dict[str, Any]]:
        body = tool_call(f"{server}__progress", {"steps": steps, "delay": 0.02}, msg_id=7, token=7)
        async with http.post(gateway.url, data=orjson.dumps(body), headers=session_headers(session)) as resp:
            return await collect(resp)

    three, five = await asyncio.gather(run(sessions[0], 3), run(sessions[1], 5))
    for got, steps in ((three, 3), (five, 5)):
        assert [m["params"]["progress"] for m in got if m.get("method") == "notifications/progress"] == list(
            range(1, steps + 1)
        )
        assert got[-1]["id"] == 7 and got[-1]["result"]["content"][0]["text"] == f"{server} counted {steps}"


# --- resumption ----------------------------------------------------------------------------------


async def test_lost_post_stream_resumes_from_last_event_id(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    session = await initialize(http, gateway.url)
    body = tool_call("beta__progress", {"steps": 4, "delay": 0.15}, msg_id=3, token="r")
    seen: list[Event] = []
    async with http.post(gateway.url, data=orjson.dumps(body), headers=session_headers(session)) as resp:
        async for event in events(resp):
            seen.append(event)
            if event.data:  # the priming event has no data; stop after the first real one
                break
    assert seen[0].id is not None and seen[0].data == ""  # priming event: an id to resume from
    last = seen[-1].id
    assert last is not None
    headers = {**session_headers(session), "Accept": "text/event-stream", "Last-Event-ID": last}
    async with http.get(gateway.url, headers=headers) as resp:
        rest = [e async for e in events(resp)]
    replayed = messages(rest)
    ids = [e.id for e in rest if e.data]
    assert last not in ids  # nothing already received comes twice
    assert [m["params"]["progress"] for m in replayed if m.get("method") == "notifications/progress"] == [2, 3, 4]
    assert replayed[-1]["id"] == 3 and replayed[-1]["result"]["content"][0]["text"] == "beta counted 4"


# --- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_handshake_client_cancels_the_upstream_call(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    before = await _cancellations(gateway, http, server)
    session = await initialize(http, gateway.url)
    body = tool_call(f"{server}__slow", {"seconds": 30}, msg_id=11)
    headers = session_headers(session)

    async def call() -> int:
        async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as resp:
            await resp.read()
            return resp.status

    pending = asyncio.create_task(call())
    await wait_until(lambda: conn(gateway, server).inflight > 0)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 11, "reason": "t"}}
    async with http.post(gateway.url, data=orjson.dumps(cancel), headers=headers) as resp:
        assert resp.status == 202
    async with asyncio.timeout(5):
        await pending  # the POST ends without a result
    await wait_until(lambda: conn(gateway, server).inflight == 0)
    await _wait_cancellations(gateway, http, server, before + 1)


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_closing_a_stateless_stream_cancels_the_upstream_call(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    before = await _cancellations(gateway, http, server)
    body, headers = modern_request("tools/call", {"name": f"{server}__slow", "arguments": {"seconds": 30}})

    async def call() -> None:
        async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as resp:
            await resp.read()

    pending = asyncio.create_task(call())
    await wait_until(lambda: conn(gateway, server).inflight > 0)
    pending.cancel()  # aiohttp closes the connection
    await wait_until(lambda: conn(gateway, server).inflight == 0)
    await _wait_cancellations(gateway, http, server, before + 1)


async def _cancellations(gateway: RunningGateway, http: aiohttp.ClientSession, server: str) -> int:
    body, headers = modern_request("tools/call", {"name": f"{server}__cancellations", "arguments": {}})
    async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as resp:
        answer = await resp.json()
    return int(answer["result"]["content"][0]["text"])


async def _wait_cancellations(gateway: RunningGateway, http: aiohttp.ClientSession, server: str, want: int) -> None:
    async with asyncio.timeout(5):
        while await _cancellations(gateway, http, server) < want:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)


# --- notifications outside requests ---------------------------------------------------------------


async def _read_until(resp: aiohttp.ClientResponse, method: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        async for event in events(resp):
            if event.data:
                msg = orjson.loads(event.data)
                if msg.get("method") == method:
                    return msg  # type: ignore[no-any-return]
    raise AssertionError(f"the stream ended before {method}")


async def _call(http: aiohttp.ClientSession, url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body, headers = modern_request("tools/call", {"name": name, "arguments": arguments})
    async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
        return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_list_changed_reaches_get_streams_and_the_catalog(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    session = await initialize(http, gateway.url)
    headers = {**session_headers(session), "Accept": "text/event-stream"}
    async with http.get(gateway.url, headers=headers) as stream:
        await _call(http, gateway.url, f"{server}__grow", {"tool": f"fresh_{server}_get"})
        await _read_until(stream, "notifications/tools/list_changed")
    assert f"{server}__fresh_{server}_get" in await _all_tools(http, gateway.url)  # refreshed before the news


async def _all_tools(http: aiohttp.ClientSession, url: str) -> set[str]:
    names: set[str] = set()
    cursor = None
    while True:
        body, headers = modern_request("tools/list", {"cursor": cursor} if cursor else {})
        async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
            result = (await resp.json())["result"]
        names |= {t["name"] for t in result["tools"]}
        cursor = result.get("nextCursor")
        if not cursor:
            return names


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_list_changed_reaches_stateless_listeners(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    body, headers = modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as stream:
        ack = await _read_until(stream, "notifications/subscriptions/acknowledged")
        assert ack["params"]["notifications"] == {"toolsListChanged": True}
        await _call(http, gateway.url, f"{server}__grow", {"tool": f"fresh_{server}_listen"})
        await _read_until(stream, "notifications/tools/list_changed")


@pytest.mark.parametrize("server", ["alpha", "beta", "gamma"])
async def test_resource_updates_go_to_subscribers_only(
    gateway: RunningGateway, http: aiohttp.ClientSession, server: str
) -> None:
    uri = f"mem://{server}/k1"
    subscriber, bystander = await initialize(http, gateway.url), await initialize(http, gateway.url)
    subscribe = {"jsonrpc": "2.0", "id": 5, "method": "resources/subscribe", "params": {"uri": uri}}
    async with http.post(gateway.url, data=orjson.dumps(subscribe), headers=session_headers(subscriber)) as resp:
        assert (await resp.json())["result"] == {}
    get = {"Accept": "text/event-stream"}
    async with (
        http.get(gateway.url, headers={**session_headers(subscriber), **get}) as mine,
        http.get(gateway.url, headers={**session_headers(bystander), **get}) as theirs,
    ):
        await _call(http, gateway.url, f"{server}__touch", {"key": "k1"})
        update = await _read_until(mine, "notifications/resources/updated")
        assert update["params"]["uri"] == uri
        with pytest.raises(TimeoutError):
            await _read_until(theirs, "notifications/resources/updated", timeout=1.0)


async def test_upstream_subscriptions_are_counted(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    uri = "mem://beta/counted"
    first, second = await initialize(http, gateway.url), await initialize(http, gateway.url)

    async def send(session: str, method: str) -> None:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"uri": uri}}
        async with http.post(gateway.url, data=orjson.dumps(body), headers=session_headers(session)) as resp:
            assert (await resp.json())["result"] == {}

    async def upstream_view() -> list[str]:
        answer = await _call(http, gateway.url, "beta__subscriptions", {})
        return [u for u in answer["result"]["content"][0]["text"].split(",") if u]

    await send(first, "resources/subscribe")
    await send(second, "resources/subscribe")
    assert (await upstream_view()).count(uri) == 1  # subscribed upstream once, for both
    await send(first, "resources/unsubscribe")
    assert uri in await upstream_view()  # the second still wants it
    async with http.delete(gateway.url, headers=session_headers(second)) as resp:
        assert resp.status == 200  # ending the session releases its subscriptions
    async with asyncio.timeout(5):
        while uri in await upstream_view():  # noqa: ASYNC110 - bounded poll of the upstream's own view
            await asyncio.sleep(0.05)


async def test_stateless_listener_gets_resource_updates(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    uri = "mem://alpha/listened"
    body, headers = modern_request("subscriptions/listen", {"notifications": {"resourceSubscriptions": [uri]}})
    async with http.post(gateway.url, data=orjson.dumps(body), headers=headers) as stream:
        await _read_until(stream, "notifications/subscriptions/acknowledged")
        await _call(http, gateway.url, "alpha__touch", {"key": "listened"})
        update = await _read_until(stream, "notifications/resources/updated")
        assert update["params"]["uri"] == uri


# --- a gateway of its own: short keep-alives and deadlines ----------------------------------------


@pytest.mark.asyncio(loop_scope="function")
async def test_keepalives_and_parked_call_deadline(tmp_path: Path) -> None:
    servers = [{"name": "gamma", "transport": "stdio", "command": stdio_upstream_command("gamma", era="handshake")}]
    streams = {"keepalive_seconds": 0.2, "input_deadline_seconds": 0.5}
    async with (
        aiohttp.ClientSession() as http,
        running_gateway(servers=servers, store_dir=tmp_path, streams=streams) as gw,
    ):
        body, headers = modern_request("tools/call", {"name": "gamma__slow", "arguments": {"seconds": 0.7}})
        async with http.post(gw.url, data=orjson.dumps(body), headers=headers) as resp:
            raw = await resp.read()
        assert resp.headers["Content-Type"] == "text/event-stream"  # went SSE to keep the line alive
        assert b": keep-alive" in raw
        assert b'"done"' in raw

        # A handshake-era upstream asks a question: a stateless client gets input_required...
        body, headers = modern_request("tools/call", {"name": "gamma__ask", "arguments": {"question": "?"}})
        body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {}}
        async with http.post(gw.url, data=orjson.dumps(body), headers=headers) as resp:
            result = (await resp.json())["result"]
        assert result["resultType"] == "input_required"
        (key,) = result["inputRequests"]
        assert result["inputRequests"][key]["method"] == "elicitation/create"
        state = result["requestState"]

        # ...and a forged state is refused, while a real one expires after its deadline.
        forged = {**body["params"], "requestState": state[:-2] + "xx", "inputResponses": {}}
        async with http.post(gw.url, data=orjson.dumps({**body, "params": forged}), headers=headers) as resp:
            assert (await resp.json())["error"]["code"] == -32602
        await wait_until(lambda: len(gw.gateway.parking) == 0, timeout=5)
        answer = {key: {"action": "accept", "content": {"answer": "late"}}}
        late = {**body["params"], "requestState": state, "inputResponses": answer}
        async with http.post(gw.url, data=orjson.dumps({**body, "params": late}), headers=headers) as resp:
            error = (await resp.json())["error"]
        assert error["code"] == -32602 and "expired" in error["message"]


async def test_single_server_endpoints_hear_only_their_server(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    alpha_only = await initialize(http, gateway.server_url("alpha"))
    everything = await initialize(http, gateway.url)
    get = {"Accept": "text/event-stream"}
    async with (
        http.get(gateway.server_url("alpha"), headers={**session_headers(alpha_only), **get}) as scoped,
        http.get(gateway.url, headers={**session_headers(everything), **get}) as whole,
    ):
        await _call(http, gateway.url, "beta__grow", {"tool": "fresh_beta_scoped"})
        await _read_until(whole, "notifications/tools/list_changed")
        with pytest.raises(TimeoutError):
            await _read_until(scoped, "notifications/tools/list_changed", timeout=1.0)
