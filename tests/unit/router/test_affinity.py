"""Affinity pins: per session and server, bounded, forgotten with the session."""

from __future__ import annotations

from toolway.router.affinity import Affinity


def test_pins_are_per_session_and_server() -> None:
    a = Affinity(max_sessions=10)
    a.pin("s1", "calc", "r1", 3)
    a.pin("s1", "db", "r0", 1)
    assert a.get("s1", "calc") == ("r1", 3)
    assert a.get("s1", "db") == ("r0", 1)
    assert a.get("s2", "calc") is None
    a.unpin("s1", "calc")
    assert a.get("s1", "calc") is None and a.get("s1", "db") == ("r0", 1)
    a.forget("s1")
    assert a.get("s1", "db") is None and len(a) == 0


def test_the_least_recently_used_session_goes_first_past_the_bound() -> None:
    a = Affinity(max_sessions=2)
    a.pin("old", "calc", "r0", 1)
    a.pin("mid", "calc", "r1", 1)
    a.get("old", "calc")  # used again: "mid" is now the oldest
    a.pin("new", "calc", "r2", 1)
    assert len(a) == 2
    assert a.get("mid", "calc") is None and a.get("old", "calc") == ("r0", 1)
