"""The handshake-era way back to a client: require_capability and HandshakeSink."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from toolway.protocol.errors import (
    MISSING_CLIENT_CAPABILITY,
    REQUEST_TIMEOUT,
    ClientRpcError,
    MissingClientCapability,
    UpstreamTimeout,
    to_error,
)
from toolway.protocol.sinks import CLIENT_ANSWER_SECONDS, HandshakeSink, require_capability
from toolway.sessions.downstream import DownstreamSession
from toolway.sessions.hub import Hub
from toolway.sessions.streams import EventStream

ALL_CAPS = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": True}}
URL_ELICIT = {"mode": "url", "elicitationId": "e-1", "url": "https://example.test/x", "message": "go"}
FORM_ELICIT = {"mode": "form", "message": "name?", "requestedSchema": {"type": "object", "properties": {}}}


# --- require_capability -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "capabilities"),
    [
        ("sampling/createMessage", {"messages": []}, {"sampling": {}}),
        ("roots/list", None, {"roots": {}}),
        ("roots/list", {}, {"roots": {"listChanged": True}}),
        ("elicitation/create", FORM_ELICIT, {"elicitation": {}}),
        ("elicitation/create", {"message": "no mode means form"}, {"elicitation": {}}),
        ("elicitation/create", None, {"elicitation": {}}),
        ("elicitation/create", URL_ELICIT, {"elicitation": {"url": {}}}),
        ("elicitation/create", URL_ELICIT, {"elicitation": {"form": {}, "url": {}}}),
        ("ping", None, {}),
        ("tools/call", {"name": "x"}, {}),
        ("notifications/whatever", None, {}),
    ],
)
def test_declared_capabilities_pass(method: str, params: dict[str, Any] | None, capabilities: dict[str, Any]) -> None:
    require_capability(capabilities, method, params)


@pytest.mark.parametrize(
    ("method", "params", "capabilities"),
    [
        ("sampling/createMessage", {}, {}),
        ("sampling/createMessage", {}, {"elicitation": {}, "roots": {}}),
        ("sampling/createMessage", {}, {"sampling": True}),
        ("sampling/createMessage", {}, {"sampling": None}),
        ("roots/list", None, {}),
        ("roots/list", None, {"roots": []}),
        ("elicitation/create", FORM_ELICIT, {}),
        ("elicitation/create", FORM_ELICIT, {"elicitation": "yes"}),
        ("elicitation/create", URL_ELICIT, {"elicitation": {}}),
        ("elicitation/create", URL_ELICIT, {"elicitation": {"form": {}}}),
        ("elicitation/create", URL_ELICIT, {"sampling": {}}),
    ],
)
def test_undeclared_capabilities_raise(
    method: str, params: dict[str, Any] | None, capabilities: dict[str, Any]
) -> None:
    with pytest.raises(MissingClientCapability) as info:
        require_capability(capabilities, method, params)
    assert to_error(info.value)["code"] == MISSING_CLIENT_CAPABILITY


def test_the_error_names_the_capability() -> None:
    with pytest.raises(MissingClientCapability, match=r"'sampling'.*sampling/createMessage"):
        require_capability({}, "sampling/createMessage", None)
    with pytest.raises(MissingClientCapability, match=r"elicitation\.url"):
        require_capability({"elicitation": {}}, "elicitation/create", URL_ELICIT)


# --- HandshakeSink ----------------------------------------------------------------------------------


def make_session(capabilities: dict[str, Any] | None = None) -> DownstreamSession:
    return DownstreamSession(
        id="sess",
        path="/mcp",
        scope=None,
        protocol_version="2025-11-25",
        client_capabilities=ALL_CAPS if capabilities is None else capabilities,
        client_info=None,
        last_seen=0.0,
    )


class Rig:
    def __init__(self, capabilities: dict[str, Any] | None = None, timeout: float = CLIENT_ANSWER_SECONDS) -> None:
        self.session = make_session(capabilities)
        self.stream = EventStream(with_ids=True)
        self.hub = Hub()
        self.sink = HandshakeSink(self.session, self.stream, self.hub, timeout=timeout)

    def sent(self) -> list[dict[str, Any]]:
        return messages(self.stream)


def messages(stream: EventStream) -> list[dict[str, Any]]:
    frames, _, _ = stream.after(0)
    return [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_notify_pushes_a_notification() -> None:
    rig = Rig()
    rig.sink.notify("notifications/progress", {"progressToken": "t", "progress": 1})
    assert rig.sent() == [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}}
    ]


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("sampling/createMessage", {"messages": [], "maxTokens": 5}),
        ("roots/list", None),
        ("elicitation/create", FORM_ELICIT),
    ],
)
async def test_request_pushes_and_resolves_with_the_clients_result(method: str, params: dict[str, Any] | None) -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request(method, params))
    await settle()
    expected: dict[str, Any] = {"jsonrpc": "2.0", "id": "tw-1", "method": method}
    if params is not None:
        expected["params"] = params
    assert rig.sent() == [expected]
    assert set(rig.session.pending) == {"tw-1"}
    rig.session.pending["tw-1"].set_result({"jsonrpc": "2.0", "id": "tw-1", "result": {"answer": 42}})
    assert await task == {"answer": 42}
    assert rig.session.pending == {}
    assert not rig.stream.closed  # the call's own answer comes later


async def test_each_request_gets_a_fresh_session_id() -> None:
    rig = Rig()
    first = asyncio.create_task(rig.sink.request("roots/list", None))
    second = asyncio.create_task(rig.sink.request("roots/list", None))
    await settle()
    assert [m["id"] for m in rig.sent()] == ["tw-1", "tw-2"]
    # Answered out of order, each gets its own.
    rig.session.pending["tw-2"].set_result({"result": {"n": 2}})
    rig.session.pending["tw-1"].set_result({"result": {"n": 1}})
    assert await first == {"n": 1}
    assert await second == {"n": 2}


async def test_ids_are_shared_with_other_sinks_of_the_session() -> None:
    rig = Rig()
    other = HandshakeSink(rig.session, EventStream(with_ids=True), rig.hub)
    t1 = asyncio.create_task(rig.sink.request("roots/list", None))
    t2 = asyncio.create_task(other.request("roots/list", None))
    await settle()
    assert set(rig.session.pending) == {"tw-1", "tw-2"}
    for future in rig.session.pending.values():
        future.set_result({"result": {}})
    await asyncio.gather(t1, t2)


@pytest.mark.parametrize("result", [None, [], "text", 3])
async def test_a_result_that_is_not_an_object_becomes_empty(result: Any) -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("roots/list", None))
    await settle()
    answer = {"jsonrpc": "2.0", "id": "tw-1"}
    if result is not None:
        answer["result"] = result
    rig.session.pending["tw-1"].set_result(answer)
    assert await task == {}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": -1, "message": "user declined"}, {"code": -1, "message": "user declined"}),
        ({"code": -32602, "message": "bad", "data": {"x": 1}}, {"code": -32602, "message": "bad", "data": {"x": 1}}),
        ("not an object", {"code": -32603}),
        (None, {"code": -32603}),
    ],
)
async def test_an_error_answer_raises_client_rpc_error(error: Any, expected: dict[str, Any]) -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("sampling/createMessage", {"messages": []}))
    await settle()
    rig.session.pending["tw-1"].set_result({"jsonrpc": "2.0", "id": "tw-1", "error": error})
    with pytest.raises(ClientRpcError) as info:
        await task
    assert info.value.error == expected
    assert info.value.server == "<client>"
    assert rig.session.pending == {}


@pytest.mark.parametrize(
    ("method", "params", "capabilities"),
    [
        ("sampling/createMessage", {"messages": []}, {}),
        ("roots/list", None, {"sampling": {}}),
        ("elicitation/create", FORM_ELICIT, {}),
        ("elicitation/create", URL_ELICIT, {"elicitation": {}}),
    ],
)
async def test_missing_capability_raises_before_anything_is_sent(
    method: str, params: dict[str, Any] | None, capabilities: dict[str, Any]
) -> None:
    rig = Rig(capabilities)
    with pytest.raises(MissingClientCapability):
        await rig.sink.request(method, params)
    assert rig.stream.empty
    assert rig.session.pending == {}
    assert rig.session.next_request_id() == "tw-1"  # no id was spent
    rig.hub.publish(
        {"jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": {"elicitationId": "e-1"}}
    )
    assert rig.session.standalone.empty  # nothing was registered for a refused URL elicitation


async def test_cancelling_the_waiting_task_tells_the_client() -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("sampling/createMessage", {"messages": []}))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sent = rig.sent()
    assert len(sent) == 2
    assert sent[1]["method"] == "notifications/cancelled"
    assert sent[1]["params"]["requestId"] == "tw-1"
    assert isinstance(sent[1]["params"]["reason"], str)
    assert "id" not in sent[1]
    assert rig.session.pending == {}


async def test_a_late_answer_after_cancel_is_harmless() -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("roots/list", None))
    await settle()
    future = rig.session.pending["tw-1"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert future.cancelled()
    assert "tw-1" not in rig.session.pending  # the ingress finds nothing to resolve


async def test_no_answer_in_time_is_an_upstream_timeout() -> None:
    rig = Rig(timeout=0)
    with pytest.raises(UpstreamTimeout) as info:
        await rig.sink.request("roots/list", None)
    assert to_error(info.value)["code"] == REQUEST_TIMEOUT
    assert info.value.server == "<client>"
    assert "roots/list" in info.value.cause
    assert rig.session.pending == {}
    assert rig.sent()[0]["id"] == "tw-1"


async def test_a_timed_out_question_is_cancelled_at_the_client() -> None:
    rig = Rig(timeout=0)
    with pytest.raises(UpstreamTimeout):
        await rig.sink.request("roots/list", None)
    assert [m.get("method") for m in rig.sent()] == ["roots/list", "notifications/cancelled"]


async def test_session_close_fails_the_waiting_request() -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("roots/list", None))
    await settle()
    rig.session.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.session.pending == {}


async def test_url_elicitation_registers_its_completion_for_this_client() -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("elicitation/create", URL_ELICIT))
    await settle()
    done = {"jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": {"elicitationId": "e-1"}}
    rig.hub.publish(done)
    assert messages(rig.session.standalone) == [done]  # outside the request: on the session's GET stream
    assert rig.sent() == [{"jsonrpc": "2.0", "id": "tw-1", "method": "elicitation/create", "params": URL_ELICIT}]
    rig.session.pending["tw-1"].set_result({"result": {"action": "accept"}})
    assert await task == {"action": "accept"}


@pytest.mark.parametrize(
    "params",
    [
        FORM_ELICIT,
        {**FORM_ELICIT, "elicitationId": "e-1"},
        {k: v for k, v in URL_ELICIT.items() if k != "elicitationId"},
    ],
)
async def test_other_elicitations_register_nothing(params: dict[str, Any]) -> None:
    rig = Rig()
    task = asyncio.create_task(rig.sink.request("elicitation/create", params))
    await settle()
    rig.hub.publish(
        {"jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": {"elicitationId": "e-1"}}
    )
    assert rig.session.standalone.empty
    rig.session.pending["tw-1"].set_result({"result": {}})
    await task
