"""Payloads in the access log: off unless a server opts in, and then redacted."""

from __future__ import annotations

from typing import Any

import structlog

from toolway.observability import access_log
from toolway.observability.access_log import MAX_STRING, REDACTED, redact
from toolway.observability.events import CallFinished, Events
from toolway.pipeline.context import Call


def test_secret_named_keys_are_redacted_at_any_depth() -> None:
    value = {
        "password": "hunter2",
        "nested": {"api_key": "k", "X-Api-Key": "k", "Authorization": "Basic abc", "client_secret": "s"},
        "items": [{"access_token": "t", "name": "ok"}],
        "city": "Lisbon",
    }
    assert redact(value) == {
        "password": REDACTED,
        "nested": {"api_key": REDACTED, "X-Api-Key": REDACTED, "Authorization": REDACTED, "client_secret": REDACTED},
        "items": [{"access_token": REDACTED, "name": "ok"}],
        "city": "Lisbon",
    }
    assert value["password"] == "hunter2"  # a copy: the call's own params are untouched


def test_secret_looking_text_is_redacted() -> None:
    cases = {
        "card 4111 1111 1111 1111 on file": f"card {REDACTED} on file",
        "card 4111-1111-1111-1111": f"card {REDACTED}",
        "pan 4111111111111111": f"pan {REDACTED}",
        "ssn 123-45-6789": f"ssn {REDACTED}",
        "use Bearer abc.def-ghi now": f"use {REDACTED} now",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig": f"jwt {REDACTED}",
        "key sk-abcdefghijklmnopqrstuv": f"key {REDACTED}",
        "mail ana@example.com please": f"mail {REDACTED} please",
    }
    for text, expected in cases.items():
        assert redact(text) == expected, text


def test_ordinary_values_pass_through() -> None:
    value = {"city": "Lisbon", "days": 3, "ratio": 0.5, "ok": True, "none": None, "year": "2026-11-29 12:48"}
    assert redact(value) == value


def test_long_integers_and_long_strings() -> None:
    assert redact({"n": 4111111111111111})["n"] == REDACTED
    assert redact({"n": 123456})["n"] == 123456
    cut = redact("x" * (MAX_STRING + 10))
    assert cut.startswith("x" * MAX_STRING) and cut.endswith("(10 more characters)")


def _call(server: str, arguments: dict[str, Any]) -> Call:
    call = Call(
        method="tools/call",
        params={"name": f"{server}__pay", "arguments": arguments},
        era="modern",
        protocol_version="2026-07-28",
        client_capabilities={},
        client_info=None,
        request_id="r1",
        server=server,
        target=f"{server}__pay",
    )
    call.annotations["result"] = {"content": [{"type": "text", "text": "charged 4111 1111 1111 1111"}]}
    if server == "verbose":  # what the router marks on calls to servers with `log_payloads: true`
        call.annotations["log_payloads"] = True
    return call


def test_payloads_are_logged_only_for_servers_that_opt_in() -> None:
    events = Events()
    access_log.install(events)
    arguments = {"card": "4111111111111111", "password": "p", "amount": 5}
    with structlog.testing.capture_logs() as logs:
        events.emit(CallFinished(_call("verbose", arguments), "ok", None, 0.01, 0.005))
        events.emit(CallFinished(_call("quiet", arguments), "ok", None, 0.01, 0.005))
    verbose, quiet = (entry for entry in logs if entry["event"] == "call")
    assert verbose["arguments"] == {"card": REDACTED, "password": REDACTED, "amount": 5}
    assert verbose["result"] == {"content": [{"type": "text", "text": f"charged {REDACTED}"}]}
    assert "arguments" not in quiet and "result" not in quiet
    assert "4111" not in repr(logs) and "'p'" not in repr(logs)
