"""Change events on the wire: what one replica sends is what another one gets, and nothing else."""

from __future__ import annotations

import pytest

from toolway.state.events import (
    BadEvent,
    ChangeEvent,
    KeysChanged,
    PinApproved,
    ServerChanged,
    TrafficSet,
    decode,
    encode,
)


@pytest.mark.parametrize(
    "event",
    [
        TrafficSet("kill/tool/calc__add", "1"),
        TrafficSet("weights/calc", None),
        ServerChanged("dyn"),
        ServerChanged("files", enabled=False),
        PinApproved("rug", "echo"),
        KeysChanged(),
    ],
)
def test_every_event_survives_the_wire(event: ChangeEvent) -> None:
    assert decode(encode("gw-a", event)) == ("gw-a", event)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "version-1"),
        (b'{"v": 2, "type": "keys", "origin": "a", "data": {}}', "version-1"),
        (b'{"v": 1, "type": "reboot", "origin": "a", "data": {}}', "unknown event type 'reboot'"),
        (b'{"v": 1, "type": "keys", "data": {}}', "no origin"),
        (b'{"v": 1, "type": "server", "origin": "a", "data": {"server": 7}}', "unexpected field server=7"),
        (b'{"v": 1, "type": "server", "origin": "a", "data": {"server": "x", "enabled": "yes"}}', "enabled='yes'"),
        (b'{"v": 1, "type": "pin", "origin": "a", "data": {"server": "x"}}', "tool"),
        (b'{"v": 1, "type": "traffic", "origin": "a", "data": {"field": "f", "value": 1, "x": 2}}', "value=1"),
    ],
)
def test_malformed_events_are_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason.replace("[", r"\[")):
        decode(raw)
