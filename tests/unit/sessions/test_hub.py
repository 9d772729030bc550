"""The notification hub: listeners, resource subscription counting and publish routing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from toolway.sessions.hub import LIST_CHANGED, Hub, Listener
from toolway.sessions.streams import EventStream

SUB_ID = "io.modelcontextprotocol/subscriptionId"
TOOLS, PROMPTS, RESOURCES = LIST_CHANGED


def listener(
    lid: str,
    *,
    list_changed: frozenset[str] = frozenset(LIST_CHANGED),
    log_level: str | None = None,
    subscription_id: Any = None,
    scope: str | None = None,
) -> Listener:
    return Listener(
        lid,
        EventStream(with_ids=True),
        list_changed,
        log_level=log_level,
        subscription_id=subscription_id,
        scope=scope,
    )


def hub_with(*listeners: Listener) -> Hub:
    hub = Hub()
    for lst in listeners:
        hub.add(lst)
    return hub


def received(stream: EventStream) -> list[dict[str, Any]]:
    frames, _, _ = stream.after(0)
    return [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


# --- listeners --------------------------------------------------------------------------------------


def test_add_get_len() -> None:
    hub = Hub()
    assert len(hub) == 0
    a = listener("a")
    hub.add(a)
    assert len(hub) == 1
    assert hub.get("a") is a
    assert hub.get("b") is None


def test_listener_defaults() -> None:
    lst = Listener("x", EventStream(with_ids=True))
    assert lst.list_changed == frozenset(LIST_CHANGED)
    assert lst.log_level is None
    assert lst.uris == set()
    assert lst.subscription_id is None
    assert lst.scope is None


def test_remove_unknown_is_empty() -> None:
    assert Hub().remove("nobody") == []


def test_remove_drops_the_listener() -> None:
    hub = hub_with(listener("a"))
    assert hub.remove("a") == []
    assert hub.get("a") is None
    assert len(hub) == 0


# --- subscription counting --------------------------------------------------------------------------


def test_first_subscriber_is_first() -> None:
    hub = hub_with(listener("a"), listener("b"))
    assert hub.subscribe("a", "file:///x") is True
    assert hub.subscribe("b", "file:///x") is False
    assert hub.subscribe("a", "file:///x") is False  # again: still not first
    assert hub.subscribed() == {"file:///x"}
    assert hub.get("a").uris == {"file:///x"}  # type: ignore[union-attr]


def test_subscribe_for_an_unknown_listener_does_nothing() -> None:
    hub = Hub()
    assert hub.subscribe("ghost", "file:///x") is False
    assert hub.subscribed() == set()


def test_last_unsubscriber_is_last() -> None:
    hub = hub_with(listener("a"), listener("b"))
    hub.subscribe("a", "u")
    hub.subscribe("b", "u")
    assert hub.unsubscribe("a", "u") is False
    assert hub.subscribed() == {"u"}
    assert hub.unsubscribe("b", "u") is True
    assert hub.subscribed() == set()
    assert hub.get("a").uris == set()  # type: ignore[union-attr]
    assert hub.get("b").uris == set()  # type: ignore[union-attr]


@pytest.mark.parametrize(("who", "uri"), [("a", "other"), ("b", "u"), ("ghost", "u")])
def test_unsubscribe_of_something_not_subscribed_is_false(who: str, uri: str) -> None:
    hub = hub_with(listener("a"), listener("b"))
    hub.subscribe("a", "u")
    assert hub.unsubscribe(who, uri) is False
    assert hub.subscribed() == {"u"}


def test_unsubscribe_twice_is_last_only_once() -> None:
    hub = hub_with(listener("a"))
    hub.subscribe("a", "u")
    assert hub.unsubscribe("a", "u") is True
    assert hub.unsubscribe("a", "u") is False


def test_resubscribe_after_the_last_left_is_first_again() -> None:
    hub = hub_with(listener("a"))
    hub.subscribe("a", "u")
    hub.unsubscribe("a", "u")
    assert hub.subscribe("a", "u") is True


def test_remove_returns_the_uris_nobody_wants_any_more() -> None:
    hub = hub_with(listener("a"), listener("b"))
    for uri in ("shared", "only-a-1", "only-a-2"):
        hub.subscribe("a", uri)
    hub.subscribe("b", "shared")
    assert sorted(hub.remove("a")) == ["only-a-1", "only-a-2"]
    assert hub.subscribed() == {"shared"}
    assert hub.remove("b") == ["shared"]
    assert hub.subscribed() == set()


def test_remove_then_remove_again_returns_nothing() -> None:
    hub = hub_with(listener("a"))
    hub.subscribe("a", "u")
    assert hub.remove("a") == ["u"]
    assert hub.remove("a") == []


def test_counting_under_churn() -> None:
    hub = Hub()
    firsts = lasts = 0
    for i in range(20):
        hub.add(listener(f"l{i}"))
        firsts += hub.subscribe(f"l{i}", "u")
    for i in range(20):
        lasts += len(hub.remove(f"l{i}"))
    assert (firsts, lasts) == (1, 1)


# --- list_changed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", LIST_CHANGED)
def test_list_changed_goes_only_to_those_who_want_that_method(method: str) -> None:
    everything = listener("all")
    tools_only = listener("tools", list_changed=frozenset({TOOLS}))
    nothing = listener("none", list_changed=frozenset())
    hub = hub_with(everything, tools_only, nothing)
    hub.publish(note(method))
    assert received(everything.stream) == [note(method)]
    assert received(tools_only.stream) == ([note(method)] if method == TOOLS else [])
    assert received(nothing.stream) == []


@pytest.mark.parametrize(
    "method", ["notifications/progress", "notifications/cancelled", "tools/call", "notifications/unknown", None]
)
def test_other_methods_go_nowhere(method: Any) -> None:
    lst = listener("a", log_level="debug")
    hub = hub_with(lst)
    hub.subscribe("a", "u")
    hub.publish({"jsonrpc": "2.0", "method": method, "params": {"uri": "u", "level": "error"}})
    assert received(lst.stream) == []


def test_publish_without_params_still_delivers() -> None:
    lst = listener("a")
    hub = hub_with(lst)
    hub.publish({"jsonrpc": "2.0", "method": TOOLS})
    assert received(lst.stream) == [{"jsonrpc": "2.0", "method": TOOLS, "params": {}}]


# --- resources/updated ------------------------------------------------------------------------------


def test_resource_updates_go_only_to_that_uris_subscribers() -> None:
    a, b, c = listener("a"), listener("b"), listener("c")
    hub = hub_with(a, b, c)
    hub.subscribe("a", "file:///x")
    hub.subscribe("b", "file:///y")
    update = note("notifications/resources/updated", uri="file:///x")
    hub.publish(update)
    assert received(a.stream) == [update]
    assert received(b.stream) == []
    assert received(c.stream) == []


@pytest.mark.parametrize("params", [{}, {"uri": "file:///nobody"}, {"uri": None}])
def test_resource_update_for_no_subscriber_goes_nowhere(params: dict[str, Any]) -> None:
    a = listener("a")
    hub = hub_with(a)
    hub.subscribe("a", "file:///x")
    hub.publish({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": params})
    assert received(a.stream) == []


def test_resource_updates_stop_after_unsubscribe_and_remove() -> None:
    a, b = listener("a"), listener("b")
    hub = hub_with(a, b)
    hub.subscribe("a", "u")
    hub.subscribe("b", "u")
    hub.unsubscribe("a", "u")
    hub.remove("b")
    hub.publish(note("notifications/resources/updated", uri="u"))
    assert received(a.stream) == []
    assert received(b.stream) == []


# --- notifications/message --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["dbg"]),
        ("info", ["dbg", "inf"]),
        ("error", ["dbg", "inf", "err"]),
        ("critical", ["dbg", "inf", "err"]),
    ],
)
def test_log_messages_are_filtered_by_each_listeners_level(level: str, expected: list[str]) -> None:
    listeners = {
        "dbg": listener("dbg", log_level="debug"),
        "inf": listener("inf", log_level="info"),
        "err": listener("err", log_level="error"),
        "off": listener("off", log_level=None),
    }
    hub = hub_with(*listeners.values())
    hub.publish(note("notifications/message", level=level, data="x"))
    got = sorted(name for name, lst in listeners.items() if received(lst.stream))
    assert got == sorted(expected)


# --- elicitation/complete ---------------------------------------------------------------------------


def complete(eid: Any) -> dict[str, Any]:
    return note("notifications/elicitation/complete", elicitationId=eid)


def test_elicitation_complete_goes_only_to_the_registered_stream_once() -> None:
    other = listener("other")
    hub = hub_with(other)
    target = EventStream(with_ids=True)
    hub.expect_elicitation("e1", target)
    hub.publish(complete("e1"))
    hub.publish(complete("e1"))
    assert received(target) == [complete("e1")]
    assert received(other.stream) == []


def test_elicitation_complete_for_an_unknown_id_goes_nowhere() -> None:
    other = listener("other")
    hub = hub_with(other)
    target = EventStream(with_ids=True)
    hub.expect_elicitation("e1", target)
    hub.publish(complete("e2"))
    assert received(target) == []
    assert received(other.stream) == []
    hub.publish(complete("e1"))  # e1 is still expected
    assert received(target) == [complete("e1")]


def test_elicitation_ids_are_matched_as_strings() -> None:
    hub = Hub()
    target = EventStream(with_ids=True)
    hub.expect_elicitation("42", target)
    hub.publish(complete(42))
    assert len(received(target)) == 1


def test_elicitation_complete_ignores_origin_and_scope() -> None:
    hub = hub_with(listener("scoped", scope="a"))
    target = EventStream(with_ids=True)
    hub.expect_elicitation("e1", target)
    hub.publish(complete("e1"), origin="b")
    assert received(target) == [complete("e1")]


def test_elicitation_map_is_bounded_oldest_first() -> None:
    hub = Hub(max_elicitations=3)
    streams = {f"e{i}": EventStream(with_ids=True) for i in range(5)}
    for eid, stream in streams.items():
        hub.expect_elicitation(eid, stream)
    for eid in streams:
        hub.publish(complete(eid))
    assert {eid: len(received(s)) for eid, s in streams.items()} == {"e0": 0, "e1": 0, "e2": 1, "e3": 1, "e4": 1}


# --- origin and scope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "expected"),
    [(None, {"global", "scoped-a", "scoped-b"}), ("a", {"global", "scoped-a"}), ("c", {"global"})],
)
@pytest.mark.parametrize("kind", ["list_changed", "updated", "message"])
def test_origin_reaches_global_listeners_and_those_scoped_to_it(
    origin: str | None, expected: set[str], kind: str
) -> None:
    listeners = {
        "global": listener("global", log_level="debug"),
        "scoped-a": listener("scoped-a", log_level="debug", scope="a"),
        "scoped-b": listener("scoped-b", log_level="debug", scope="b"),
    }
    hub = hub_with(*listeners.values())
    for lid in listeners:
        hub.subscribe(lid, "u")
    message = {
        "list_changed": note(TOOLS),
        "updated": note("notifications/resources/updated", uri="u"),
        "message": note("notifications/message", level="info", data="x"),
    }[kind]
    hub.publish(message, origin=origin)
    assert {name for name, lst in listeners.items() if received(lst.stream)} == expected


# --- _meta and subscription ids ---------------------------------------------------------------------


def test_upstream_subscription_id_is_dropped_for_plain_listeners() -> None:
    lst = listener("a")
    hub = hub_with(lst)
    hub.publish({"jsonrpc": "2.0", "method": TOOLS, "params": {"_meta": {SUB_ID: "upstream-7"}}})
    assert received(lst.stream) == [{"jsonrpc": "2.0", "method": TOOLS, "params": {}}]


def test_other_meta_keys_survive() -> None:
    lst = listener("a")
    hub = hub_with(lst)
    hub.publish(note(TOOLS, _meta={SUB_ID: "upstream-7", "trace": "t1"}, extra=1))
    assert received(lst.stream) == [note(TOOLS, _meta={"trace": "t1"}, extra=1)]


@pytest.mark.parametrize("sub_id", [7, "listen-1", 0])
def test_listen_streams_get_their_own_subscription_id(sub_id: Any) -> None:
    tagged = listener("t", subscription_id=sub_id)
    plain = listener("p")
    hub = hub_with(tagged, plain)
    hub.publish(note(TOOLS, _meta={SUB_ID: "upstream-7", "trace": "t1"}))
    assert received(tagged.stream) == [note(TOOLS, _meta={"trace": "t1", SUB_ID: sub_id})]
    assert received(plain.stream) == [note(TOOLS, _meta={"trace": "t1"})]


@pytest.mark.parametrize("meta", [None, "not-a-dict", [1, 2]])
def test_malformed_meta_is_dropped(meta: Any) -> None:
    tagged = listener("t", subscription_id="s1")
    plain = listener("p")
    hub = hub_with(tagged, plain)
    hub.publish(note(TOOLS, _meta=meta, x=1))
    assert received(plain.stream) == [note(TOOLS, x=1)]
    assert received(tagged.stream) == [note(TOOLS, x=1, _meta={SUB_ID: "s1"})]


def test_each_listener_gets_its_own_id_for_resource_updates() -> None:
    a = listener("a", subscription_id="sa")
    b = listener("b", subscription_id="sb")
    hub = hub_with(a, b)
    hub.subscribe("a", "u")
    hub.subscribe("b", "u")
    hub.publish(note("notifications/resources/updated", uri="u", _meta={SUB_ID: "up"}))
    assert received(a.stream) == [note("notifications/resources/updated", uri="u", _meta={SUB_ID: "sa"})]
    assert received(b.stream) == [note("notifications/resources/updated", uri="u", _meta={SUB_ID: "sb"})]


def test_publish_does_not_change_the_message() -> None:
    message = note(TOOLS, _meta={SUB_ID: "up", "k": 1})
    snapshot = orjson.loads(orjson.dumps(message))
    hub = hub_with(listener("a", subscription_id="mine"), listener("b"))
    hub.publish(message)
    assert message == snapshot
