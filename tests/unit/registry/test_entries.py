"""Server entries as the registry stores and shows them."""

from __future__ import annotations

import pytest

from toolway.registry.entries import REDACTED, RegistryError, dump, redact, validate_server

ENTRY = {
    "name": "web",
    "transport": "streamable-http",
    "url": "http://127.0.0.1:9/mcp",
    "headers": {"X-Api-Key": "plain"},
    "credentials": {"headers": {"Authorization": {"value": "tok", "prefix": "Bearer "}}},
    "tags": ["a"],
}


def test_stored_entries_keep_secrets_and_restore_the_same_server() -> None:
    server = validate_server(ENTRY)
    stored = dump(server)
    assert stored["credentials"]["headers"]["Authorization"]["value"] == "tok"  # not pydantic's "**********"
    assert validate_server(stored) == server
    assert "timeouts" not in stored  # defaults are left out


def test_shown_entries_hide_every_secret() -> None:
    shown = redact(dump(validate_server(ENTRY)))
    assert shown["headers"] == {"X-Api-Key": REDACTED}
    assert shown["credentials"]["headers"]["Authorization"] == {"value": REDACTED, "prefix": "Bearer "}
    assert shown["tags"] == ["a"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "transport": "stdio"}, "command"),
        (
            {"name": "x", "transport": "stdio", "command": ["y"], "health": {"grace_seconds": -1}},
            "health.grace_seconds",
        ),
        ({"name": "x", "transport": "carrier-pigeon"}, "transport"),
        ([], None),
    ],
)
def test_invalid_entries_name_the_field(body: object, field: str | None) -> None:
    with pytest.raises(RegistryError) as info:
        validate_server(body)
    assert info.value.field == field and info.value.status == 400
