"""Namespacing `<server>__<name>` for tools and prompts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from toolway.config.model import NAMESPACE_SEPARATOR, StdioServerConfig
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


SERVER_NAMES_THAT_WOULD_NOT_SPLIT = ["a_", "x-_", "_", "a__b"]


@pytest.mark.parametrize("server", SERVER_NAMES_THAT_WOULD_NOT_SPLIT)
def test_config_refuses_names_that_would_not_split_back(server: str) -> None:
    # qualify("a_", "b") == "a___b" splits as ("a", "_b"): such names must never reach the router.
    with pytest.raises(ValidationError, match="'__'"):
        StdioServerConfig(name=server, transport="stdio", command=["x"])


@pytest.mark.parametrize("server", ["a", "a_b", "a-", "-a", "_a", "a-_b", "0"])
def test_round_trip_for_every_server_name_the_config_accepts(server: str) -> None:
    StdioServerConfig(name=server, transport="stdio", command=["x"])
    assert split(qualify(server, "tool")) == (server, "tool")
    assert split(qualify(server, "_tool")) == (server, "_tool")
