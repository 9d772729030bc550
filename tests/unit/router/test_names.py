"""Namespacing `<server>__<name>` for tools and prompts."""

from __future__ import annotations

import re

import pytest

from toolway.config.model import NAMESPACE_SEPARATOR, SERVER_NAME_PATTERN
from toolway.router.names import qualify, split


def test_separator() -> None:
    assert NAMESPACE_SEPARATOR == "__"


@pytest.mark.parametrize(
    ("server", "name", "qualified"),
    [
        ("weather", "get_forecast", "weather__get_forecast"),
        ("my_server", "tool", "my_server__tool"),
        ("my-server", "my_tool", "my-server__my_tool"),
        ("a_b_c", "d_e_f", "a_b_c__d_e_f"),
        ("s", "t", "s__t"),
        ("s", "a__b", "s__a__b"),
        ("s", "_private", "s___private"),
        ("s", "trailing_", "s__trailing_"),
        ("s", "日本語", "s__日本語"),
        ("0", "x", "0__x"),
        ("_lead", "x", "_lead__x"),  # a leading underscore is harmless
    ],
)
def test_qualify_and_split_round_trip(server: str, name: str, qualified: str) -> None:
    assert qualify(server, name) == qualified
    assert split(qualified) == (server, name)


@pytest.mark.parametrize(
    ("qualified", "expected"),
    [
        ("a__b__c", ("a", "b__c")),  # the first separator ends the server part
        ("a__b____c", ("a", "b____c")),
        ("srv____x", ("srv", "__x")),
        ("a_b__c_d", ("a_b", "c_d")),
        ("a___b", ("a", "_b")),
    ],
)
def test_split_at_the_first_separator(qualified: str, expected: tuple[str, str]) -> None:
    assert split(qualified) == expected


@pytest.mark.parametrize(
    "qualified",
    [
        "",
        "plain",
        "single_underscore",
        "a_b_c",
        "__",
        "__tool",  # no server
        "server__",  # no name
        "_",
        "-",
    ],
)
def test_split_without_a_full_namespace_is_none(qualified: str) -> None:
    assert split(qualified) is None


SERVER_NAMES_ALLOWED_BY_CONFIG = ["a_", "x-_", "_"]


@pytest.mark.parametrize("server", SERVER_NAMES_ALLOWED_BY_CONFIG)
def test_config_allows_these_server_names(server: str) -> None:
    # The premise of the next test: the config accepts these names.
    assert re.fullmatch(SERVER_NAME_PATTERN, server)
    assert NAMESPACE_SEPARATOR not in server


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "BUG: server names the config accepts may end with '_' (SERVER_NAME_PATTERN "
        "^[a-z0-9_-]+$ only refuses '__'), so qualify('a_', 'b') == 'a___b' and split() cuts at the "
        "first '__', answering ('a', '_b'): the call routes to the wrong server, or to none"
    ),
)
@pytest.mark.parametrize("server", SERVER_NAMES_ALLOWED_BY_CONFIG)
def test_round_trip_for_every_server_name_the_config_accepts(server: str) -> None:
    assert split(qualify(server, "tool")) == (server, "tool")
