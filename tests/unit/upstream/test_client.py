"""UpstreamClient over a fake channel: era negotiation, request dressing, and inbound message routing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from toolway.protocol.errors import (
    MISSING_CLIENT_CAPABILITY,
    ClientRpcError,
    MissingClientCapability,
    UpstreamProtocolError,
    UpstreamRpcError,
)
from toolway.protocol.versions import (
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE,
    LATEST_MODERN,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
)
from toolway.upstream.channel import ChannelClosed, OnMessage
from toolway.upstream.client import GATEWAY_CAPABILITIES, GATEWAY_INFO, META_LOG_LEVEL, UpstreamClient
from toolway.upstream.http import UpstreamHttpError

Message = dict[str, Any]
Responder = Callable[[Message, dict[str, str], OnMessage | None], Awaitable[Message]]
METHOD_NOT_FOUND = {"code": -32601, "message": "Method not found"}


# --- fakes ------------------------------------------------------------------------------------------


class FakeChannel:
    """The channel seam: records what the client sends and answers from per-method responders."""

    def __init__(self, *, attributes_messages: bool = True) -> None:
        self.session_id: str | None = "stale-session"
        self.attributes_messages = attributes_messages
        self.on_message: OnMessage | None = None
        self.opened = 0
        self.closed = False
        self.sent: list[tuple[Message, dict[str, str]]] = []
        self.notified: list[tuple[Message, dict[str, str]]] = []
        self.responders: dict[str, Responder] = {}
        self.session_at: dict[str, str | None] = {}

    async def open(self) -> None:
        self.opened += 1

    async def roundtrip(
        self, message: Message, headers: dict[str, str], on_message: OnMessage | None = None
    ) -> Message:
        self.sent.append((message, headers))
        self.session_at[message["method"]] = self.session_id
        responder = self.responders.get(message["method"])
        if responder is None:
            return {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        return await responder(message, headers, on_message)

    async def notify(self, message: Message, headers: dict[str, str]) -> None:
        self.notified.append((message, headers))

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "fake"

    def methods(self) -> list[str]:
        return [m["method"] for m, _ in self.sent]


def answer(result: Any) -> Responder:
    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}

    return respond


def fail(error: Any) -> Responder:
    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        return {"jsonrpc": "2.0", "id": message["id"], "error": error}

    return respond


def raising(exc: Exception) -> Responder:
    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        raise exc

    return respond


def emitting(*inbound: Message, result: Any = None) -> Responder:
    """Sends `inbound` on the request's own stream, then answers."""

    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        assert on_message is not None
        for msg in inbound:
            on_message(msg)
        return {"jsonrpc": "2.0", "id": message["id"], "result": {} if result is None else result}

    return respond


class RecordingSink:
    def __init__(self, reply: Callable[[str, Any], Awaitable[Message]] | None = None) -> None:
        self.notes: list[tuple[str, Message]] = []
        self.asked: list[tuple[str, Any]] = []
        self._reply = reply

    def notify(self, method: str, params: Message) -> None:
        self.notes.append((method, params))

    async def request(self, method: str, params: Message | None) -> Message:
        self.asked.append((method, params))
        if self._reply is None:
            return {"answered": method}
        return await self._reply(method, params)


class Spawner:
    def __init__(self) -> None:
        self.pending: list[Coroutine[Any, Any, None]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.pending.append(coro)

    def start(self) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(c) for c in self.pending]
        self.pending.clear()
        self.tasks.extend(tasks)
        return tasks

    async def run(self) -> None:
        await asyncio.gather(*self.start())

    async def aclose(self) -> None:
        for coro in self.pending:
            coro.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def spawner() -> AsyncIterator[Spawner]:
    spawner = Spawner()
    yield spawner
    await spawner.aclose()


def discover_result(versions: Any = (LATEST_MODERN,), **extra: Any) -> Message:
    return {"supportedVersions": list(versions) if isinstance(versions, tuple) else versions, **extra}


def init_result(version: Any = LATEST_HANDSHAKE, **extra: Any) -> Message:
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "up", "version": "1"},
        **extra,
    }


async def connected(
    era: str = "handshake",
    *,
    attributes: bool = True,
    spawn: Spawner | None = None,
    session: list[Message] | None = None,
) -> tuple[UpstreamClient, FakeChannel]:
    channel = FakeChannel(attributes_messages=attributes)
    if era == "modern":
        channel.responders["server/discover"] = answer(discover_result())
    else:
        channel.responders["server/discover"] = fail(METHOD_NOT_FOUND)
        channel.responders["initialize"] = answer(init_result())
    client = UpstreamClient(
        "up", channel, spawn=spawn, on_session_message=session.append if session is not None else None
    )
    negotiated = await client.connect()
    assert negotiated.era == era
    channel.sent.clear()
    channel.notified.clear()
    return client, channel


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def log(level: Any, data: str = "x") -> Message:
    return {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": data}}


def progress(token: Any, value: float = 1) -> Message:
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": value}}


# --- connect ----------------------------------------------------------------------------------------


async def test_connect_adopts_the_modern_era_from_a_good_discover() -> None:
    channel = FakeChannel()
    info = {"name": "modern-up", "version": "2"}
    channel.responders["server/discover"] = answer(
        discover_result(
            ("2025-11-25", LATEST_MODERN),
            capabilities={"tools": {"listChanged": True}},
            instructions="be nice",
            _meta={"io.modelcontextprotocol/serverInfo": info},
        )
    )
    client = UpstreamClient("up", channel)
    negotiated = await client.connect()
    assert channel.opened == 1
    assert (negotiated.era, negotiated.protocol_version) == ("modern", LATEST_MODERN)
    assert negotiated.server_info == info
    assert negotiated.capabilities == {"tools": {"listChanged": True}}
    assert negotiated.instructions == "be nice"
    assert client.negotiated is negotiated
    assert channel.methods() == ["server/discover"]
    assert channel.notified == []
    message, headers = channel.sent[0]
    assert headers == {"MCP-Protocol-Version": LATEST_MODERN, "Mcp-Method": "server/discover"}
    assert message["params"]["_meta"] == {
        META_PROTOCOL_VERSION: LATEST_MODERN,
        META_CLIENT_CAPABILITIES: {},
        META_CLIENT_INFO: GATEWAY_INFO,
    }


@pytest.mark.parametrize(
    ("result", "info", "caps", "instructions"),
    [
        (discover_result(serverInfo={"name": "plain"}), {"name": "plain"}, {}, None),
        (discover_result(capabilities="nope", instructions=5), {}, {}, None),
        (
            discover_result(_meta={"io.modelcontextprotocol/serverInfo": "bad"}, serverInfo={"name": "f"}),
            {"name": "f"},
            {},
            None,
        ),
    ],
)
async def test_discover_result_fields_are_read_defensively(
    result: Message, info: Message, caps: Message, instructions: str | None
) -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = answer(result)
    negotiated = await UpstreamClient("up", channel).connect()
    assert negotiated.era == "modern"
    assert (negotiated.server_info, negotiated.capabilities, negotiated.instructions) == (info, caps, instructions)


BAD_DISCOVERY: list[Responder] = [
    fail(METHOD_NOT_FOUND),
    fail({"code": -32602, "message": "Unsupported protocol version"}),
    fail("garbage"),  # a malformed error is a protocol error: fall back too
    answer({}),
    answer(discover_result("2026-07-28")),  # not a list
    answer(discover_result(("2099-01-01",))),
    answer(discover_result(HANDSHAKE_VERSIONS)),
    answer(["not", "an", "object"]),
    raising(UpstreamHttpError("HTTP 400 with a non-JSON body")),
]


@pytest.mark.parametrize("discover", BAD_DISCOVERY)
async def test_connect_falls_back_to_initialize(discover: Responder) -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = discover
    channel.responders["initialize"] = answer(init_result("2025-06-18", instructions="hi"))
    negotiated = await UpstreamClient("up", channel).connect()
    assert (negotiated.era, negotiated.protocol_version) == ("handshake", "2025-06-18")
    assert negotiated.server_info == {"name": "up", "version": "1"}
    assert negotiated.capabilities == {"tools": {}}
    assert negotiated.instructions == "hi"
    assert channel.methods() == ["server/discover", "initialize"]
    init, init_headers = channel.sent[1]
    assert init["params"] == {
        "protocolVersion": LATEST_HANDSHAKE,
        "capabilities": GATEWAY_CAPABILITIES,
        "clientInfo": GATEWAY_INFO,
    }
    assert init_headers == {}
    assert channel.session_at["initialize"] is None  # a fresh session
    assert channel.notified == [
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {"MCP-Protocol-Version": "2025-06-18"})
    ]


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_every_handshake_version_is_accepted(version: str) -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = fail(METHOD_NOT_FOUND)
    channel.responders["initialize"] = answer(init_result(version))
    negotiated = await UpstreamClient("up", channel).connect()
    assert negotiated.protocol_version == version


@pytest.mark.parametrize("version", ["2099-01-01", LATEST_MODERN, "2024-11-05", None, 20251125, ""])
async def test_connect_refuses_a_handshake_version_it_cannot_speak(version: Any) -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = fail(METHOD_NOT_FOUND)
    channel.responders["initialize"] = answer(init_result(version))
    client = UpstreamClient("up", channel)
    with pytest.raises(UpstreamProtocolError, match="Toolway cannot bridge"):
        await client.connect()
    assert channel.notified == []
    assert client.negotiated is None


async def test_initialize_errors_are_not_swallowed() -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = fail(METHOD_NOT_FOUND)
    channel.responders["initialize"] = fail({"code": -32600, "message": "no"})
    with pytest.raises(UpstreamRpcError):
        await UpstreamClient("up", channel).connect()


async def test_a_closed_channel_during_discover_is_not_a_fallback() -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = raising(ChannelClosed("gone"))
    with pytest.raises(ChannelClosed):
        await UpstreamClient("up", channel).connect()
    assert channel.methods() == ["server/discover"]


async def test_era_pinned_to_modern_refuses_to_fall_back() -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = fail(METHOD_NOT_FOUND)
    with pytest.raises(UpstreamProtocolError, match="pinned"):
        await UpstreamClient("up", channel, era=LATEST_MODERN).connect()
    assert channel.methods() == ["server/discover"]


async def test_era_pinned_to_modern_connects() -> None:
    channel = FakeChannel()
    channel.responders["server/discover"] = answer(discover_result())
    negotiated = await UpstreamClient("up", channel, era=LATEST_MODERN).connect()
    assert negotiated.era == "modern"


async def test_era_handshake_skips_discovery() -> None:
    channel = FakeChannel()
    channel.responders["initialize"] = answer(init_result())
    negotiated = await UpstreamClient("up", channel, era="handshake").connect()
    assert negotiated.era == "handshake"
    assert channel.methods() == ["initialize"]


async def test_request_ids_are_unique_across_the_connection() -> None:
    client, channel = await connected()
    await client.request("tools/list", None)
    await client.request("tools/list", None)
    ids = [m["id"] for m, _ in channel.sent]
    assert len(set(ids)) == 2
    assert client.next_id() not in ids


# --- request dressing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("tools/call", {"name": "echo", "arguments": {}}, "echo"),
        ("prompts/get", {"name": "greet"}, "greet"),
        ("resources/read", {"uri": "file:///a.txt"}, "file:///a.txt"),
        ("tools/call", {"name": "héllo"}, "=?base64?" + base64.b64encode("héllo".encode()).decode() + "?="),
        ("tools/call", {"name": " padded "}, "=?base64?" + base64.b64encode(b" padded ").decode() + "?="),
        ("tools/call", {"name": 5}, None),
        ("tools/call", {}, None),
        ("tools/list", {"name": "ignored"}, None),
        ("resources/read", {"name": "not-the-key"}, None),
        ("ping", None, None),
    ],
)
async def test_modern_requests_carry_routing_headers(method: str, params: Message | None, name: str | None) -> None:
    client, channel = await connected("modern")
    await client.request(method, params)
    message, headers = channel.sent[0]
    expected = {"MCP-Protocol-Version": LATEST_MODERN, "Mcp-Method": method}
    if name is not None:
        expected["Mcp-Name"] = name
    assert headers == expected
    assert message["method"] == method


@pytest.mark.parametrize("log_level", [None, "warning"])
async def test_modern_requests_carry_the_meta_envelope(log_level: str | None) -> None:
    client, channel = await connected("modern")
    caps = {"sampling": {}}
    info = {"name": "agent", "version": "9"}
    params = {"name": "echo", "_meta": {"progressToken": "tok", "custom": 1}}
    await client.request("tools/call", params, client_capabilities=caps, client_info=info, log_level=log_level)
    sent = channel.sent[0][0]["params"]
    expected_meta = {
        "progressToken": "tok",  # no sink: the client's own token passes through
        "custom": 1,
        META_PROTOCOL_VERSION: LATEST_MODERN,
        META_CLIENT_CAPABILITIES: caps,
        META_CLIENT_INFO: info,
    }
    if log_level is not None:
        expected_meta[META_LOG_LEVEL] = log_level
    assert sent == {"name": "echo", "_meta": expected_meta}
    assert params == {"name": "echo", "_meta": {"progressToken": "tok", "custom": 1}}  # caller's dict untouched


async def test_modern_defaults_are_empty_capabilities_and_the_gateways_info() -> None:
    client, channel = await connected("modern")
    await client.request("tools/list", None)
    assert channel.sent[0][0]["params"] == {
        "_meta": {META_PROTOCOL_VERSION: LATEST_MODERN, META_CLIENT_CAPABILITIES: {}, META_CLIENT_INFO: GATEWAY_INFO}
    }


@pytest.mark.parametrize("era", ["modern", "handshake"])
async def test_extra_headers_are_merged_and_win(era: str) -> None:
    client, channel = await connected(era)
    await client.request("tools/list", None, headers={"Authorization": "Bearer x", "MCP-Protocol-Version": "forced"})
    headers = channel.sent[0][1]
    assert headers["Authorization"] == "Bearer x"
    assert headers["MCP-Protocol-Version"] == "forced"


async def test_the_callers_message_id_is_used() -> None:
    client, channel = await connected()
    await client.request("tools/list", None, msg_id=777)
    assert channel.sent[0][0]["id"] == 777


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (None, None),
        ({}, {}),
        ({"name": "t"}, {"name": "t"}),
        (
            {"name": "t", "_meta": {META_PROTOCOL_VERSION: LATEST_MODERN, META_CLIENT_CAPABILITIES: {}}},
            {"name": "t"},
        ),
        (
            {
                "name": "t",
                "_meta": {
                    META_PROTOCOL_VERSION: LATEST_MODERN,
                    META_CLIENT_CAPABILITIES: {},
                    META_CLIENT_INFO: {"name": "a"},
                    META_LOG_LEVEL: "info",
                    "progressToken": "p",
                },
            },
            {"name": "t", "_meta": {"progressToken": "p"}},
        ),
        ({"name": "t", "_meta": "odd"}, {"name": "t", "_meta": "odd"}),
    ],
)
async def test_handshake_requests_drop_the_envelope(params: Message | None, expected: Message | None) -> None:
    client, channel = await connected("handshake")
    before = None if params is None else {**params}
    await client.request("tools/call", params, client_capabilities={"sampling": {}}, log_level="debug")
    message, headers = channel.sent[0]
    assert message.get("params") == expected
    assert ("params" in message) is (expected is not None)
    assert headers == {"MCP-Protocol-Version": LATEST_HANDSHAKE}
    assert params == before


# --- results and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["modern", "handshake"])
async def test_result_is_returned(era: str) -> None:
    client, channel = await connected(era)
    channel.responders["tools/list"] = answer({"tools": [{"name": "t"}]})
    assert await client.request("tools/list", None) == {"tools": [{"name": "t"}]}


@pytest.mark.parametrize(
    "error",
    [
        {"code": -32602, "message": "bad"},
        {"code": 42, "message": "", "data": {"why": "because"}},
    ],
)
async def test_a_json_rpc_error_is_passed_through(error: Message) -> None:
    client, channel = await connected()
    channel.responders["tools/call"] = fail(error)
    with pytest.raises(UpstreamRpcError) as info:
        await client.request("tools/call", {"name": "t"})
    assert info.value.error == error
    assert info.value.server == "up"


@pytest.mark.parametrize(
    "error",
    [
        "boom",
        None,
        [],
        {},
        {"code": -1},
        {"message": "m"},
        {"code": "-32602", "message": "m"},
        {"code": 1.5, "message": "m"},
        {"code": True, "message": "m"},
        {"code": -1, "message": None},
        {"code": -1, "message": 7},
    ],
)
async def test_a_malformed_error_is_a_protocol_error(error: Any) -> None:
    client, channel = await connected()
    channel.responders["tools/call"] = fail(error)
    with pytest.raises(UpstreamProtocolError, match="malformed"):
        await client.request("tools/call", {"name": "t"})


@pytest.mark.parametrize("response", [{"jsonrpc": "2.0", "id": 1}, {"result": None}, {"result": []}, {"result": "ok"}])
async def test_a_result_that_is_not_an_object_is_a_protocol_error(response: Message) -> None:
    client, channel = await connected()

    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        return response

    channel.responders["tools/call"] = respond
    with pytest.raises(UpstreamProtocolError, match="not an object"):
        await client.request("tools/call", {"name": "t"})


async def test_an_http_level_failure_is_a_protocol_error() -> None:
    client, channel = await connected()
    channel.responders["tools/call"] = raising(UpstreamHttpError("HTTP 500 with a non-JSON body"))
    with pytest.raises(UpstreamProtocolError, match="HTTP 500"):
        await client.request("tools/call", {"name": "t"})


async def test_channel_errors_propagate() -> None:
    client, channel = await connected()
    channel.responders["tools/call"] = raising(ChannelClosed("the process exited"))
    with pytest.raises(ChannelClosed):
        await client.request("tools/call", {"name": "t"})


# --- progress ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ["modern", "handshake"])
@pytest.mark.parametrize("client_token", ["abc", 7, 0, ""])
async def test_progress_is_relayed_under_the_clients_own_token(era: str, client_token: Any) -> None:
    client, channel = await connected(era)
    sink = RecordingSink()
    seen: list[Any] = []

    async def respond(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        assert on_message is not None
        token = message["params"]["_meta"]["progressToken"]
        seen.append(token)
        on_message(progress(token, 0.5))
        on_message(progress("someone-else", 0.7))
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    channel.responders["tools/call"] = respond
    await client.request("tools/call", {"name": "t", "_meta": {"progressToken": client_token}}, sink=sink)
    (gateway_token,) = seen
    assert gateway_token != client_token
    assert isinstance(gateway_token, str)
    assert sink.notes == [("notifications/progress", {"progressToken": client_token, "progress": 0.5})]


async def test_each_call_gets_its_own_gateway_token() -> None:
    client, channel = await connected()
    for _ in range(3):
        await client.request("tools/call", {"_meta": {"progressToken": "same"}}, sink=RecordingSink())
    tokens = [m["params"]["_meta"]["progressToken"] for m, _ in channel.sent]
    assert len(set(tokens)) == 3
    assert "same" not in tokens


async def test_concurrent_callers_with_the_same_token_see_only_their_own_progress() -> None:
    client, channel = await connected()
    gates: dict[str, asyncio.Future[None]] = {}
    tokens: dict[str, str] = {}

    async def held(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        who = message["params"]["name"]
        tokens[who] = message["params"]["_meta"]["progressToken"]
        gates[who] = asyncio.get_running_loop().create_future()
        await gates[who]
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    channel.responders["tools/call"] = held
    a, b = RecordingSink(), RecordingSink()
    ta = asyncio.create_task(client.request("tools/call", {"name": "a", "_meta": {"progressToken": 1}}, sink=a))
    tb = asyncio.create_task(client.request("tools/call", {"name": "b", "_meta": {"progressToken": 1}}, sink=b))
    await settle()
    # Arriving outside either request's stream, progress still finds its call by token.
    client.on_message(progress(tokens["b"], 2))
    client.on_message(progress(tokens["a"], 3))
    assert a.notes == [("notifications/progress", {"progressToken": 1, "progress": 3})]
    assert b.notes == [("notifications/progress", {"progressToken": 1, "progress": 2})]
    for gate in gates.values():
        gate.set_result(None)
    await asyncio.gather(ta, tb)


@pytest.mark.parametrize("outcome", ["result", "error"])
async def test_no_progress_after_the_request_finished(outcome: str) -> None:
    client, channel = await connected()
    channel.responders["tools/call"] = answer({}) if outcome == "result" else fail({"code": -1, "message": "x"})
    sink = RecordingSink()
    with contextlib.suppress(UpstreamRpcError):
        await client.request("tools/call", {"_meta": {"progressToken": "p"}}, sink=sink)
    gateway_token = channel.sent[0][0]["params"]["_meta"]["progressToken"]
    client.on_message(progress(gateway_token))
    assert sink.notes == []


@pytest.mark.parametrize("token", [True, False, None, 1.5, [1], {"a": 1}])
async def test_unusable_progress_tokens_are_left_alone(token: Any) -> None:
    client, channel = await connected()
    await client.request("tools/call", {"_meta": {"progressToken": token}}, sink=RecordingSink())
    assert channel.sent[0][0]["params"]["_meta"]["progressToken"] == token


async def test_without_a_sink_the_token_is_not_replaced() -> None:
    client, channel = await connected()
    await client.request("tools/call", {"_meta": {"progressToken": "mine"}})
    assert channel.sent[0][0]["params"]["_meta"]["progressToken"] == "mine"


# --- log messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "delivered"),
    [
        (None, []),
        ("debug", ["debug", "info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
async def test_log_messages_reach_the_caller_when_its_level_admits(threshold: str | None, delivered: list[str]) -> None:
    session: list[Message] = []
    client, channel = await connected(session=session)
    channel.responders["tools/call"] = emitting(*(log(lv) for lv in ("debug", "info", "warning", "error")))
    sink = RecordingSink()
    await client.request("tools/call", {"name": "t"}, sink=sink, log_level=threshold)
    assert [p["level"] for m, p in sink.notes if m == "notifications/message"] == delivered
    assert session == []  # a call's log lines never become session news


async def test_log_messages_outside_any_call_are_session_messages() -> None:
    session: list[Message] = []
    client, _ = await connected(session=session)
    client.on_message(log("info"))
    assert session == [log("info")]


async def test_log_messages_during_a_call_without_a_sink_are_session_messages() -> None:
    session: list[Message] = []
    client, channel = await connected(session=session)
    channel.responders["tools/call"] = emitting(log("error"))
    await client.request("tools/call", {"name": "t"}, log_level="debug")
    assert session == [log("error")]


# --- session-level notifications --------------------------------------------------------------------


SESSION_NOTES = [
    {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"},
    {"jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {}},
    {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"},
    {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///a"}},
]


@pytest.mark.parametrize("note", SESSION_NOTES)
@pytest.mark.parametrize("where", ["session-stream", "request-stream"])
async def test_session_notifications_go_to_on_session_message(note: Message, where: str) -> None:
    session: list[Message] = []
    client, channel = await connected(session=session)
    sink = RecordingSink()
    if where == "session-stream":
        client.on_message(note)
    else:
        channel.responders["tools/call"] = emitting(note)
        await client.request("tools/call", {"name": "t"}, sink=sink, log_level="debug")
    assert session == [note]
    assert sink.notes == []


@pytest.mark.parametrize("note", SESSION_NOTES)
async def test_session_notifications_without_a_callback_are_dropped(note: Message) -> None:
    client, _ = await connected()
    client.on_message(note)  # nothing to assert but that it does not raise


def test_http_channels_keep_their_own_message_callback() -> None:
    channel = FakeChannel(attributes_messages=True)
    UpstreamClient("up", channel)
    assert channel.on_message is None


def test_stdio_channels_route_unattributed_messages_through_the_client() -> None:
    channel = FakeChannel(attributes_messages=False)
    UpstreamClient("up", channel)
    assert channel.on_message is not None


# --- server -> client requests ----------------------------------------------------------------------


def server_request(method: str, params: Message | None = None, msg_id: Any = "srv-1") -> Message:
    message: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


@pytest.mark.parametrize("era", ["modern", "handshake"])
@pytest.mark.parametrize("msg_id", ["srv-1", 0, 99])
async def test_a_server_request_is_relayed_and_answered_with_the_upstreams_id(
    spawner: Spawner, era: str, msg_id: Any
) -> None:
    client, channel = await connected(era, spawn=spawner)
    ask = server_request("sampling/createMessage", {"messages": []}, msg_id)
    channel.responders["tools/call"] = emitting(ask)
    sink = RecordingSink()
    await client.request("tools/call", {"name": "t"}, sink=sink)
    assert sink.asked == []  # relayed via spawn, not inline
    await spawner.run()
    assert sink.asked == [("sampling/createMessage", {"messages": []})]
    version = LATEST_MODERN if era == "modern" else LATEST_HANDSHAKE
    assert channel.notified == [
        (
            {"jsonrpc": "2.0", "id": msg_id, "result": {"answered": "sampling/createMessage"}},
            {"MCP-Protocol-Version": version},
        )
    ]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ClientRpcError({"code": -1, "message": "User rejected"}), {"code": -1, "message": "User rejected"}),
        (MissingClientCapability("no sampling"), {"code": MISSING_CLIENT_CAPABILITY, "message": "no sampling"}),
        (UpstreamRpcError("other", {"code": -32000, "message": "x"}), {"code": -32000, "message": "x"}),
    ],
)
async def test_a_failed_relay_is_answered_with_the_error(spawner: Spawner, exc: Exception, expected: Message) -> None:
    client, channel = await connected(spawn=spawner)

    async def refuse(method: str, params: Any) -> Message:
        raise exc

    sink = RecordingSink(refuse)
    channel.responders["tools/call"] = emitting(server_request("elicitation/create", {"message": "?"}))
    await client.request("tools/call", {"name": "t"}, sink=sink)
    await spawner.run()
    assert channel.notified == [
        ({"jsonrpc": "2.0", "id": "srv-1", "error": expected}, {"MCP-Protocol-Version": LATEST_HANDSHAKE})
    ]


@pytest.mark.parametrize("with_sink", [True, False])
async def test_ping_is_answered_without_the_sink(spawner: Spawner, with_sink: bool) -> None:
    client, channel = await connected(spawn=spawner)
    sink = RecordingSink()
    channel.responders["tools/call"] = emitting(server_request("ping", msg_id=5))
    await client.request("tools/call", {"name": "t"}, sink=sink if with_sink else None)
    await spawner.run()
    assert sink.asked == []
    assert channel.notified == [({"jsonrpc": "2.0", "id": 5, "result": {}}, {"MCP-Protocol-Version": LATEST_HANDSHAKE})]


async def test_a_server_request_with_nobody_to_ask_is_refused(spawner: Spawner) -> None:
    client, channel = await connected(spawn=spawner)
    client.on_message(server_request("roots/list"))
    await spawner.run()
    ((reply, _),) = channel.notified
    assert reply["id"] == "srv-1"
    assert reply["error"]["code"] == -32601
    assert "roots/list" in reply["error"]["message"]


async def test_without_spawn_server_requests_are_ignored() -> None:
    client, channel = await connected(spawn=None)
    sink = RecordingSink()
    channel.responders["tools/call"] = emitting(server_request("roots/list"))
    await client.request("tools/call", {"name": "t"}, sink=sink)
    assert sink.asked == []
    assert channel.notified == []


async def test_a_closed_channel_swallows_the_reply(spawner: Spawner) -> None:
    client, channel = await connected(spawn=spawner)

    async def closed(message: Message, headers: dict[str, str]) -> None:
        raise ChannelClosed("gone")

    channel.notify = closed  # type: ignore[method-assign]
    client.on_message(server_request("ping"))
    await spawner.run()  # no exception escapes the relay


async def test_the_upstream_can_cancel_its_request(spawner: Spawner) -> None:
    client, channel = await connected(spawn=spawner)
    cancelled: list[bool] = []

    async def wait_forever(method: str, params: Any) -> Message:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {}

    sink = RecordingSink(wait_forever)
    channel.responders["tools/call"] = emitting(server_request("elicitation/create", {"message": "?"}, "srv-9"))
    await client.request("tools/call", {"name": "t"}, sink=sink)
    (relay,) = spawner.start()
    await settle()
    assert sink.asked  # the question is out
    client.on_message(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "srv-9", "reason": "x"}}
    )
    with pytest.raises(asyncio.CancelledError):
        await relay
    assert cancelled == [True]
    assert channel.notified == []  # a cancelled request gets no answer


async def test_cancel_for_an_unknown_request_is_ignored(spawner: Spawner) -> None:
    session: list[Message] = []
    client, _ = await connected(spawn=spawner, session=session)
    client.on_message({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "nope"}})
    assert session == []


async def test_close_cancels_relays_and_closes_the_channel(spawner: Spawner) -> None:
    client, channel = await connected(spawn=spawner)

    async def wait_forever(method: str, params: Any) -> Message:
        await asyncio.Event().wait()
        return {}

    channel.responders["tools/call"] = emitting(server_request("roots/list"))
    await client.request("tools/call", {"name": "t"}, sink=RecordingSink(wait_forever))
    (relay,) = spawner.start()
    await settle()
    await client.close()
    assert channel.closed
    with pytest.raises(asyncio.CancelledError):
        await relay
    assert channel.notified == []


@pytest.mark.parametrize(
    "response",
    [
        {"jsonrpc": "2.0", "id": 12, "result": {"resultType": "complete"}},
        {"jsonrpc": "2.0", "id": 12, "error": {"code": -32603, "message": "bye"}},
    ],
)
async def test_a_stray_response_is_not_relayed(spawner: Spawner, response: Message) -> None:
    # e.g. the final answer on an upstream `subscriptions/listen` stream, which HttpChannel.listen
    # hands to client.on_message; the spawned task would fail inside the gateway's task group.
    client, channel = await connected("modern", spawn=spawner)
    client.on_message(response)
    for coro in list(spawner.pending):
        spawner.pending.remove(coro)
        await coro
    assert channel.notified == []


# --- stdio: messages that name no request -----------------------------------------------------------


async def test_stdio_messages_go_to_the_oldest_call_with_a_sink(spawner: Spawner) -> None:
    session: list[Message] = []
    client, channel = await connected(attributes=False, spawn=spawner, session=session)
    assert channel.on_message is not None
    gates: dict[str, asyncio.Future[None]] = {}

    async def held(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        gates[message["params"]["name"]] = asyncio.get_running_loop().create_future()
        await gates[message["params"]["name"]]
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    channel.responders["tools/call"] = held
    a, b = RecordingSink(), RecordingSink()
    t0 = asyncio.create_task(client.request("tools/call", {"name": "none"}, log_level="debug"))
    await settle()
    ta = asyncio.create_task(client.request("tools/call", {"name": "a"}, sink=a, log_level="debug"))
    await settle()
    tb = asyncio.create_task(client.request("tools/call", {"name": "b"}, sink=b, log_level="debug"))
    await settle()
    assert set(gates) == {"none", "a", "b"}

    channel.on_message(log("info", "1"))
    channel.on_message(server_request("roots/list", msg_id=1))
    assert [p["data"] for _, p in a.notes] == ["1"]
    assert b.notes == []

    gates["a"].set_result(None)
    await ta
    channel.on_message(log("info", "2"))
    channel.on_message(server_request("roots/list", msg_id=2))
    assert [p["data"] for _, p in b.notes] == ["2"]

    gates["b"].set_result(None)
    await tb
    channel.on_message(log("info", "3"))  # only a call without a sink is left
    assert session == [log("info", "3")]
    assert len(a.notes) == 1 and len(b.notes) == 1

    await spawner.run()
    assert a.asked == [("roots/list", None)]
    assert b.asked == [("roots/list", None)]
    assert sorted(r["id"] for r, _ in channel.notified) == [1, 2]
    gates["none"].set_result(None)
    await t0


async def test_stdio_log_lines_use_the_target_calls_level() -> None:
    session: list[Message] = []
    client, channel = await connected(attributes=False, session=session)
    assert channel.on_message is not None
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def held(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        await gate
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    channel.responders["tools/call"] = held
    sink = RecordingSink()
    task = asyncio.create_task(client.request("tools/call", {"name": "a"}, sink=sink, log_level="error"))
    await settle()
    channel.on_message(log("info"))
    channel.on_message(log("critical"))
    assert [p["level"] for _, p in sink.notes] == ["critical"]
    assert session == []
    gate.set_result(None)
    await task


async def test_stdio_progress_finds_its_call_by_token() -> None:
    client, channel = await connected(attributes=False)
    assert channel.on_message is not None
    gates: list[asyncio.Future[None]] = []
    tokens: list[str] = []

    async def held(message: Message, headers: dict[str, str], on_message: OnMessage | None) -> Message:
        tokens.append(message["params"]["_meta"]["progressToken"])
        gates.append(asyncio.get_running_loop().create_future())
        await gates[-1]
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}

    channel.responders["tools/call"] = held
    a, b = RecordingSink(), RecordingSink()
    ta = asyncio.create_task(client.request("tools/call", {"_meta": {"progressToken": "A"}}, sink=a))
    await settle()
    tb = asyncio.create_task(client.request("tools/call", {"_meta": {"progressToken": "B"}}, sink=b))
    await settle()
    channel.on_message(progress(tokens[1], 5))  # b's, though a is older
    assert a.notes == []
    assert b.notes == [("notifications/progress", {"progressToken": "B", "progress": 5})]
    for gate in gates:
        gate.set_result(None)
    await asyncio.gather(ta, tb)


async def test_stdio_with_nothing_in_flight(spawner: Spawner) -> None:
    session: list[Message] = []
    _client, channel = await connected(attributes=False, spawn=spawner, session=session)
    assert channel.on_message is not None
    channel.on_message(log("warning"))
    channel.on_message({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    channel.on_message(server_request("sampling/createMessage", {}))
    assert [m["method"] for m in session] == ["notifications/message", "notifications/tools/list_changed"]
    await spawner.run()
    ((reply, _),) = channel.notified
    assert reply["error"]["code"] == -32601


# --- cancel / notify --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "attributes", "sends"),
    [("modern", True, False), ("modern", False, True), ("handshake", True, True), ("handshake", False, True)],
)
async def test_cancel(era: str, attributes: bool, sends: bool) -> None:
    client, channel = await connected(era, attributes=attributes)
    await client.cancel(41, "the client cancelled the request")
    version = LATEST_MODERN if era == "modern" else LATEST_HANDSHAKE
    expected = [
        (
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 41, "reason": "the client cancelled the request"},
            },
            {"MCP-Protocol-Version": version},
        )
    ]
    assert channel.notified == (expected if sends else [])


@pytest.mark.parametrize("params", [None, {"level": "info"}])
async def test_notify(params: Message | None) -> None:
    client, channel = await connected()
    await client.notify("notifications/roots/list_changed", params)
    expected: Message = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    if params is not None:
        expected["params"] = params
    assert channel.notified == [(expected, {"MCP-Protocol-Version": LATEST_HANDSHAKE})]
