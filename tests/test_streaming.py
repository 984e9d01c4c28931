"""The SSE parser and the stream meter: table-driven, and any chunk split gives the same events."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.streaming import (
    SSEEvent,
    SSEParser,
    StreamMeter,
    classify,
    is_event_stream,
)


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: a\n\n", [("message", "a", None)]),
        (b"data:a\n\n", [("message", "a", None)]),
        (b"data:  two spaces\n\n", [("message", " two spaces", None)]),
        (b"data: x\r\n\r\n", [("message", "x", None)]),
        (b"data: x\r\rdata: y\r\r", [("message", "x", None), ("message", "y", None)]),
        (b"data: a\ndata: b\n\n", [("message", "a\nb", None)]),
        (b": keep-alive\n\ndata: a\n\n", [("message", "a", None)]),
        (b"event: delta\nid: 7\ndata: {}\n\n", [("delta", "{}", "7")]),
        (b"retry: 100\nfoo: bar\n\n", []),  # no data: nothing dispatched
        (b"data: a\n", []),  # not yet ended: not dispatched
        (b"\xef\xbb\xbfdata: bom\n\n", [("message", "bom", None)]),
        (b"data\n\n", [("message", "", None)]),  # a field without a colon: empty value
        ("data: é€\n\n".encode(), [("message", "é€", None)]),
    ],
)
def test_parser_table(stream: bytes, expected: list[tuple[str, str, str | None]]) -> None:
    assert [tuple(e) for e in parse(stream)] == expected


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert [e.data for e in parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n")] == ["a", "b"]


def test_a_line_longer_than_the_bound_is_cut_not_kept() -> None:
    parser = SSEParser(max_line_bytes=16)
    assert parser.feed(b"data: " + b"x" * 1000) == []
    assert len(parser._buf) == 16
    (event,) = parser.feed(b"\n\n")
    assert event.data == "x" * 10


def chunk(content: str | None = None, finish: str | None = None, model: str = "m:1") -> bytes:
    delta = {} if content is None else {"content": content}
    doc = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


OPENAI = (
    chunk("")  # role-only first chunk in real servers: no token
    + chunk("Hel")
    + b": ping\n\n"
    + chunk("lo")
    + chunk(" there")
    + chunk(None, "stop")
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("[DONE]", (False, True, True)),
        (chunk("a")[6:-2].decode(), (True, False, True)),
        (chunk(None, "stop")[6:-2].decode(), (False, True, True)),
        (chunk("z", "length")[6:-2].decode(), (True, True, True)),
        (chunk("")[6:-2].decode(), (False, False, True)),
        ('{"choices": []}', (False, False, True)),  # a usage chunk
        ('{"choices": [{"text": "hi", "finish_reason": null}]}', (True, False, True)),
        ('{"choices": [{"delta": {"reasoning_content": "hm"}}]}', (True, False, True)),
        ('{"token": "x"}', (True, False, False)),  # plain SSE event with JSON data
        ("plain words", (True, False, False)),
        ("", (False, False, False)),
        ("{not json", (True, False, False)),
    ],
)
def test_classify_table(data: str, expected: tuple[bool, bool, bool]) -> None:
    assert classify(data) == expected


def feed_at(meter: StreamMeter, parts: list[tuple[bytes, float]]) -> None:
    for part, at in parts:
        meter.feed(part, at)


def test_openai_stream_figures() -> None:
    meter = StreamMeter()
    feed_at(
        meter,
        [
            (chunk(""), 5.0),
            (chunk("Hel"), 100.0),
            (chunk("lo"), 130.0),
            (chunk(" there") + chunk(None, "stop"), 190.0),
            (b"data: [DONE]\n\n", 191.0),
        ],
    )
    fig = meter.figures(clean_end=True)
    assert (fig.ttft_ms, fig.tokens, fig.itl_ms, fig.complete) == (100.0, 3, 45.0, True)
    assert json.loads(fig.first_data or "")["model"] == "m:1"


@pytest.mark.parametrize(
    ("stream", "clean_end", "tokens", "complete"),
    [
        (OPENAI, True, 3, True),
        (OPENAI, False, 3, True),  # the terminator came before the transport failed
        (chunk("a") + chunk("b"), True, 2, False),  # closed cleanly without [DONE]: cut
        (chunk("a") + chunk("b"), False, 2, False),
        (chunk("a") + b"data: [DONE]\n\n", True, 1, True),
        (chunk("a", "stop"), True, 1, True),  # finish_reason alone terminates
        (chunk("a") + b"data: [DONE]\n\n" + chunk("late"), True, 1, True),  # nothing after
        (b"data: one\n\ndata: two\n\n", True, 2, True),  # plain SSE: a clean end is its end
        (b"data: one\n\ndata: two\n\n", False, 2, False),  # plain SSE cut by the transport
        (b"", True, 0, False),  # no event at all: aborted
        (b": only a comment\n\n", True, 0, False),
    ],
)
def test_termination_table(stream: bytes, clean_end: bool, tokens: int, complete: bool) -> None:
    meter = StreamMeter()
    meter.feed(stream, 1.0)
    fig = meter.figures(clean_end)
    assert (fig.tokens, fig.complete) == (tokens, complete)
    assert fig.ttft_ms == (1.0 if tokens else None)
    assert fig.itl_ms == (0.0 if tokens >= 2 else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json", False),
        ("", False),
        (None, False),
    ],
)
def test_is_event_stream(value: str | None, expected: bool) -> None:
    assert is_event_stream(value) is expected


MIXED = (
    OPENAI.replace(b"\n", b"\r\n") + "data: é€ ünïcode\r\n\r\n".encode() + b"data: a\rdata: b\r\r"
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=0, max_value=len(MIXED)), max_size=40))
def test_any_chunk_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(MIXED)]
    parts = [MIXED[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse(*parts) == parse(MIXED)
    meter = StreamMeter()
    for i, part in enumerate(parts):
        meter.feed(part, float(i))
    whole = StreamMeter()
    whole.feed(MIXED, 0.0)
    assert meter.tokens == whole.tokens == 3
    assert meter.done and meter.figures(True).first_data == whole.figures(True).first_data
