"""The correlation id: X-Request-Id first, then the trace id of a W3C traceparent, else a new one."""

from __future__ import annotations

from toolway.protocol.layer import new_request_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_x_request_id_wins() -> None:
    assert new_request_id("abc-123", TRACEPARENT) == "abc-123"


def test_traceparent_gives_its_trace_id() -> None:
    assert new_request_id(None, TRACEPARENT) == TRACE
    assert new_request_id("", f"  {TRACEPARENT} ") == TRACE
    assert new_request_id(None, f"01-{TRACE}-00f067aa0ba902b7-01-future") == TRACE  # later versions may add fields


def test_invalid_traceparents_are_ignored() -> None:
    for bad in (
        "garbage",
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper case is not W3C
    ):
        minted = new_request_id(None, bad)
        assert len(minted) == 16 and minted != TRACE, bad


def test_an_insane_x_request_id_falls_through_to_traceparent() -> None:
    assert new_request_id("x" * 200, TRACEPARENT) == TRACE
    assert len(new_request_id("bad\nid")) == 16
