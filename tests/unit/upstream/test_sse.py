"""The incremental Server-Sent Events parser."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from toolway.upstream.sse import Event, SSEParser


def feed_all(chunks: Iterable[bytes], parser: SSEParser | None = None) -> list[Event]:
    parser = parser or SSEParser()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def chunkings(stream: bytes) -> list[list[bytes]]:
    """Whole, byte by byte, and every split into two pieces."""
    out = [[stream], byte_by_byte(stream)]
    out.extend([stream[:i], stream[i:]] for i in range(1, len(stream)))
    return out


STREAMS: list[tuple[bytes, list[Event]]] = [
    (b"data: hello\n\n", [Event("message", "hello", None)]),
    (b'event: message\ndata: {"jsonrpc":"2.0"}\n\n', [Event("message", '{"jsonrpc":"2.0"}', None)]),
    (b"data: a\ndata: b\ndata: c\n\n", [Event("message", "a\nb\nc", None)]),
    (b"data: one\n\ndata: two\n\n", [Event("message", "one", None), Event("message", "two", None)]),
    (b"id: 7\nevent: custom\ndata: x\n\n", [Event("custom", "x", "7")]),
    (b": comment\ndata: x\n: another\n\n", [Event("message", "x", None)]),
    (b"data:nospace\n\n", [Event("message", "nospace", None)]),
    (b"data:  two spaces\n\n", [Event("message", " two spaces", None)]),
    (b"data: trailing \n\n", [Event("message", "trailing ", None)]),
    (b"data: a: b: c\n\n", [Event("message", "a: b: c", None)]),
    (b"data\n\n", [Event("message", "", None)]),
    (b"data:\n\n", [Event("message", "", None)]),
    (b"data\ndata\n\n", [Event("message", "\n", None)]),
    (b"data: \xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\x89\n\n", [Event("message", "é€🎉", None)]),
    (b"retry: 1000\nfoo: bar\nData: no\ndata: yes\n\n", [Event("message", "yes", None)]),
    (b"\n\n\n: only comments\n\n", []),
    (b"data: incomplete event\n", []),  # no blank line yet: nothing dispatched
    (b"data: x", []),
    # the three line endings, and mixtures
    (b"data: a\r\n\r\n", [Event("message", "a", None)]),
    (
        b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
        [Event("message", "a\nb", None), Event("message", "c", None)],
    ),
    (b"data: a\rdata: b\r\rdata: c\n", [Event("message", "a\nb", None)]),
    (b"data: a\n\r\n", [Event("message", "a", None)]),
    (b"data: a\r\n\n", [Event("message", "a", None)]),
    (b"data: a\n\rdata: b\r\n\n", [Event("message", "a", None), Event("message", "b", None)]),
    (b"data: a\r\r\ndata: b\n\n", [Event("message", "a", None), Event("message", "b", None)]),
]


@pytest.mark.parametrize(("stream", "expected"), STREAMS)
def test_any_chunking_gives_the_same_events(stream: bytes, expected: list[Event]) -> None:
    for chunks in chunkings(stream):
        assert feed_all(chunks) == expected, chunks


def test_cr_at_a_chunk_boundary_followed_by_lf_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    # A CR ends its line at once (no waiting for a possible LF); the LF after it is skipped.
    assert parser.feed(b"\n\r") == [Event("message", "a\nb", None)]
    assert parser.feed(b"\n") == []
    # no phantom empty line was produced by the split CRLFs
    assert parser.feed(b"data: c\n\n") == [Event("message", "c", None)]


def test_lone_cr_followed_by_data_is_a_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\rx") == [Event("message", "a", None)]


def test_event_ended_by_cr_cr_is_dispatched_without_waiting() -> None:
    assert SSEParser().feed(b"data: a\r\r") == [Event("message", "a", None)]


def test_id_persists_across_events_and_event_type_resets() -> None:
    events = feed_all([b"id: 1\nevent: a\ndata: x\n\ndata: y\n\nid: 2\ndata: z\n\nid\ndata: w\n\n"])
    assert events == [
        Event("a", "x", "1"),
        Event("message", "y", "1"),
        Event("message", "z", "2"),
        Event("message", "w", ""),
    ]


def test_later_fields_of_one_event_override() -> None:
    assert feed_all([b"event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n"]) == [Event("b", "x", "2")]


def test_empty_event_field_means_message() -> None:
    assert feed_all([b"event\ndata: x\n\n", b"event:\ndata: y\n\n"]) == [
        Event("message", "x", None),
        Event("message", "y", None),
    ]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert feed_all([b"data: \xff\xfe ok\n\n"]) == [Event("message", "\ufffd\ufffd ok", None)]


def test_multibyte_character_split_across_chunks() -> None:
    stream = "data: 日本語\n\n".encode()
    assert feed_all(byte_by_byte(stream)) == [Event("message", "日本語", None)]


def test_many_events_in_one_chunk_come_out_in_order() -> None:
    stream = b"".join(f"data: {i}\n\n".encode() for i in range(100))
    assert [e.data for e in SSEParser().feed(stream)] == [str(i) for i in range(100)]


def test_feed_of_empty_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"") == []
    parser.feed(b"data: a\n")
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == [Event("message", "a", None)]


def test_large_event_within_the_limit() -> None:
    payload = b"x" * 100_000
    assert feed_all([b"data: ", payload, b"\n\n"]) == [Event("message", payload.decode(), None)]


# --- the size bound -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_event_data_at_the_limit_is_fine(chunked: bool) -> None:
    # The bound counts the event's bytes as received: its lines and their line ends.
    stream = b"data: " + b"x" * 10 + b"\n\n"
    chunks = byte_by_byte(stream) if chunked else [stream]
    parser = SSEParser(max_event_bytes=len(stream))
    assert feed_all(chunks, parser) == [Event("message", "x" * 10, None)]


def test_oversized_event_over_many_data_lines_raises() -> None:
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(ValueError, match="exceeded 100 bytes"):
        for _ in range(200):
            parser.feed(b"data: 0123456789\n")


def test_oversized_single_line_raises() -> None:
    with pytest.raises(ValueError, match="exceeded"):
        SSEParser(max_event_bytes=100).feed(b"data: " + b"x" * 200 + b"\n")


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_event_spanning_chunks_raises(chunked: bool) -> None:
    stream = b"data: " + b"x" * 200 + b"\n\n"
    with pytest.raises(ValueError, match="exceeded"):
        feed_all(byte_by_byte(stream) if chunked else [stream[:150], stream[150:]], SSEParser(max_event_bytes=100))


def test_oversized_event_inside_one_chunk_raises() -> None:
    parser = SSEParser(max_event_bytes=100)
    try:
        events = parser.feed(b"data: " + b"x" * 200 + b"\n\n")
    except ValueError:
        return
    raise AssertionError(f"no ValueError; got an event of {len(events[0].data)} bytes")


def test_an_endless_line_without_a_line_end_raises() -> None:
    parser = SSEParser(max_event_bytes=1000)
    with pytest.raises(ValueError):
        for _ in range(1000):
            parser.feed(b"xxxxxxxxxx")


def test_the_bound_is_per_event() -> None:
    parser = SSEParser(max_event_bytes=100)
    for _ in range(50):
        assert parser.feed(b"data: " + b"x" * 80 + b"\n\n") == [Event("message", "x" * 80, None)]


def test_comments_and_dispatched_events_do_not_accumulate() -> None:
    parser = SSEParser(max_event_bytes=50)
    for _ in range(100):
        parser.feed(b": keep-alive comment line\n")
        parser.feed(b"data: 0123456789\n\n")


def test_empty_data_lines_count_toward_the_bound() -> None:
    parser = SSEParser(max_event_bytes=100)
    try:
        # The blank line comes in its own chunk, so the end-of-feed check sees the pending event.
        for _ in range(1000):
            parser.feed(b"data\n")
        events = parser.feed(b"\n")
    except ValueError:
        return
    raise AssertionError(f"no ValueError; got an event of {len(events[0].data)} bytes")


def test_multibyte_data_counts_bytes_toward_the_bound() -> None:
    parser = SSEParser(max_event_bytes=100)
    try:
        parser.feed(b"data: " + "€".encode() * 40 + b"\n")  # 120 bytes of data, pending
        events = parser.feed(b"\n")
    except ValueError:
        return
    raise AssertionError(f"no ValueError; got an event of {len(events[0].data.encode())} bytes")


# --- WHATWG details the parser does not follow ----------------------------------------------------


def test_event_without_data_is_not_dispatched() -> None:
    assert SSEParser().feed(b"event: ping\n\n") == []


def test_leading_bom_is_ignored() -> None:
    assert SSEParser().feed(b"\xef\xbb\xbfdata: x\n\n") == [Event("message", "x", None)]
