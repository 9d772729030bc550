"""MCP log levels: admits, most_verbose, valid."""

from __future__ import annotations

from typing import Any

import pytest

from toolway.protocol.logging_levels import LEVELS, admits, most_verbose, valid


def test_levels_are_the_rfc5424_severities_least_severe_first() -> None:
    assert LEVELS == ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@pytest.mark.parametrize("threshold", LEVELS)
@pytest.mark.parametrize("level", LEVELS)
def test_admits_at_or_above_the_threshold(threshold: str, level: str) -> None:
    assert admits(threshold, level) is (LEVELS.index(level) >= LEVELS.index(threshold))


@pytest.mark.parametrize("level", [*LEVELS, "bogus", None, 3])
def test_no_threshold_admits_nothing(level: Any) -> None:
    assert admits(None, level) is False


@pytest.mark.parametrize("level", ["bogus", "", "DEBUG", "Error", None, 5, ["error"]])
@pytest.mark.parametrize("threshold", ["debug", "error", "emergency"])
def test_unknown_message_levels_count_as_the_most_severe(threshold: str, level: Any) -> None:
    assert admits(threshold, level) is True


@pytest.mark.parametrize("threshold", ["bogus", "", "WARNING"])
@pytest.mark.parametrize("level", LEVELS)
def test_an_unknown_threshold_admits_everything(threshold: str, level: str) -> None:
    assert admits(threshold, level) is True


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ([], None),
        (["error"], "error"),
        (["error", "info", "warning"], "info"),
        (["emergency", "debug"], "debug"),
        (["bogus", "notice", "nope"], "notice"),
        (["bogus", "DEBUG"], None),
        (["alert", "alert"], "alert"),
    ],
)
def test_most_verbose(levels: list[str], expected: str | None) -> None:
    assert most_verbose(levels) == expected


@pytest.mark.parametrize("level", LEVELS)
def test_valid_levels(level: str) -> None:
    assert valid(level) is True


@pytest.mark.parametrize("level", ["", "Debug", "WARNING", "warn", "fatal", None, 0, 1.0, ["info"], {"info": 1}])
def test_invalid_levels(level: Any) -> None:
    assert valid(level) is False
