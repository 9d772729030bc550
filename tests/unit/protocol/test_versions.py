"""Protocol versions and handshake negotiation."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.protocol import versions
from toolway.protocol.versions import HANDSHAKE_VERSIONS, LATEST_HANDSHAKE, negotiate_handshake


def test_latest_handshake_is_the_newest() -> None:
    assert LATEST_HANDSHAKE == HANDSHAKE_VERSIONS[0]
    assert list(HANDSHAKE_VERSIONS) == sorted(HANDSHAKE_VERSIONS, reverse=True)


def test_eras_do_not_share_versions() -> None:
    assert not set(versions.MODERN_VERSIONS) & set(HANDSHAKE_VERSIONS)
    assert set(versions.ALL_VERSIONS) == set(versions.MODERN_VERSIONS) | set(HANDSHAKE_VERSIONS)


@pytest.mark.parametrize("requested", HANDSHAKE_VERSIONS)
def test_known_handshake_version_is_echoed(requested: str) -> None:
    assert negotiate_handshake(requested) == requested


@pytest.mark.parametrize(
    "requested",
    [
        "2024-11-05",  # older than we speak
        "2099-01-01",  # newer than we know
        "2026-07-28",  # a stateless-era version is not a handshake version
        "",
        " 2025-06-18",
        "2025-06-18 ",
        "latest",
        None,
        20250618,
        ["2025-06-18"],
        {"v": "2025-06-18"},
        True,
    ],
)
def test_anything_else_gets_our_latest(requested: Any) -> None:
    assert negotiate_handshake(requested) == LATEST_HANDSHAKE


def test_name_bearing_methods() -> None:
    assert versions.NAME_BEARING_METHODS == {
        "tools/call": "name",
        "prompts/get": "name",
        "resources/read": "uri",
    }


def test_header_names_are_lowercase() -> None:
    for name in (versions.H_PROTOCOL_VERSION, versions.H_METHOD, versions.H_NAME, versions.H_SESSION_ID):
        assert name == name.lower()
