"""MCP log levels (RFC 5424 severities), least to most severe."""

from __future__ import annotations

from typing import Any, Final

LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_RANK: Final = {name: i for i, name in enumerate(LEVELS)}


def admits(threshold: str | None, level: Any) -> bool:
    """Does a client that asked for `threshold` want a message at `level`?"""
    if threshold is None:
        return False
    return _RANK.get(level if isinstance(level, str) else "", len(LEVELS) - 1) >= _RANK.get(threshold, 0)


def most_verbose(levels: list[str]) -> str | None:
    known = [lvl for lvl in levels if lvl in _RANK]
    return min(known, key=_RANK.__getitem__) if known else None


def valid(level: Any) -> bool:
    return isinstance(level, str) and level in _RANK
