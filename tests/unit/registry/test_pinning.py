"""Pinning's rules, without a network: hashes, field-level diffs, quarantine and approval."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.observability.events import Events
from toolway.protocol.errors import ToolQuarantined
from toolway.registry.events import ToolApproved
from toolway.registry.events import ToolQuarantined as Quarantined
from toolway.registry.pinning import NothingToApprove, Pinning, definition, diff, digest
from toolway.registry.records import Pin

ECHO = {
    "name": "echo",
    "description": "Return the text.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    "icons": [{"src": "a.png"}],
}


class Recorder:
    def __init__(self) -> None:
        self.events = Events()
        self.seen: list[Any] = []
        self.saved: list[Pin] = []
        self.changed: list[str] = []
        self.events.subscribe(Quarantined, self.seen.append)
        self.events.subscribe(ToolApproved, self.seen.append)

    def pinning(self) -> Pinning:
        return Pinning(self.events, self.saved.extend, self.changed.append)


def test_the_hash_covers_the_definition_not_decoration_or_key_order() -> None:
    reordered = {"inputSchema": ECHO["inputSchema"], "description": ECHO["description"], "name": "echo"}
    assert digest(definition(ECHO)) == digest(definition(reordered))
    assert "icons" not in definition(ECHO)
    assert digest(definition(ECHO)) != digest(definition({**ECHO, "title": "Echo"}))
    assert digest(definition(ECHO)) != digest(definition({**ECHO, "annotations": {"destructiveHint": True}}))


def test_diffs_name_each_changed_field_by_json_pointer() -> None:
    changed = {
        **definition(ECHO),
        "inputSchema": {"type": "object", "properties": {"text": {"type": "integer"}, "a/b": {}}},
        "outputSchema": {"type": "object"},
    }
    assert diff(definition(ECHO), changed) == [
        {"path": "/inputSchema/properties/a~1b", "change": "added", "current": {}},
        {"path": "/inputSchema/properties/text/type", "change": "changed", "approved": "string", "current": "integer"},
        {"path": "/outputSchema", "change": "added", "current": {"type": "object"}},
    ]


def test_first_sight_pins_a_change_quarantines_and_a_revert_releases() -> None:
    recorder = Recorder()
    pins = recorder.pinning()
    pins.observe("s", "enforce", [ECHO])
    assert [p.name for p in recorder.saved] == ["echo"] and not pins.hidden("s", "echo")

    pins.observe("s", "enforce", [{**ECHO, "description": "Return the text. And more."}])
    assert pins.hidden("s", "echo") and recorder.changed == ["s"]
    with pytest.raises(ToolQuarantined, match="toolway tools approve s__echo") as info:
        pins.check("s", "echo")
    assert info.value.data == {"server": "s", "tool": "echo", "fields": ["description"]}

    pins.observe("s", "enforce", [{**ECHO, "description": "Return the text. And more."}])  # a plain refresh
    assert len(recorder.seen) == 1  # announced once

    pins.observe("s", "enforce", [ECHO])  # the upstream put it back
    assert not pins.hidden("s", "echo") and recorder.changed == ["s", "s"]


def test_warn_reports_without_hiding_and_off_pins_nothing() -> None:
    recorder = Recorder()
    pins = recorder.pinning()
    pins.observe("w", "warn", [ECHO])
    pins.observe("w", "warn", [{**ECHO, "title": "Echo!"}])
    pins.observe("w", "warn", [{**ECHO, "title": "Echo!"}])
    assert not pins.hidden("w", "echo")
    assert [(e.fields, e.enforced) for e in recorder.seen] == [(("title",), False)]
    pins.observe("o", "off", [ECHO])
    assert pins.pin("o", "echo") is None


def test_approve_pins_the_current_definition() -> None:
    recorder = Recorder()
    pins = recorder.pinning()
    pins.observe("s", "enforce", [ECHO])
    new = {**ECHO, "description": "New."}
    pins.observe("s", "enforce", [new])
    pin = pins.approve("s", "echo")
    assert (pin.source, pin.definition["description"], pin.hash) == ("approved", "New.", digest(definition(new)))
    assert not pins.hidden("s", "echo") and isinstance(recorder.seen[-1], ToolApproved)
    with pytest.raises(NothingToApprove, match="matches its pinned definition"):
        pins.approve("s", "echo")
    with pytest.raises(NothingToApprove, match="has not been seen"):
        pins.approve("s", "ghost")
