"""Streamed answers (``text/event-stream``): an incremental SSE parser and what a stream measures.

Pure code: bytes and clock readings in, events and figures out; no socket, no clock inside.
The canary probe and the Locust user feed it the body's chunks as they arrive, each with the
moment it arrived (milliseconds since the request was sent).

``SSEParser`` follows the WHATWG event-stream rules: lines end with CRLF, LF or CR (a CR at the
end of one chunk and an LF at the start of the next are one line end); ``field: value`` lines
(one space after the colon dropped); several ``data`` lines make one event's data, joined by
LF; a line starting with ``:`` is a comment; an empty line dispatches the event (none when it
had no data). A chunk boundary may fall anywhere, inside a UTF-8 character too.

``StreamMeter`` decides what an event is:

- ``data: [DONE]`` ends the stream (the OpenAI terminator);
- a JSON object with a ``choices`` list is an OpenAI-compatible chunk
  (``chat.completion.chunk``, or a legacy ``text_completion`` one): it is a *content event*
  when a choice carries non-empty ``delta.content`` (or ``delta.reasoning_content``, or
  ``text``), and a choice's non-null ``finish_reason`` ends the stream. A chunk without
  content (the role-only first chunk, a usage chunk) is not a token;
- any other event with data is a plain SSE event and counts as a content event.

Figures: ``ttft_ms`` is the arrival of the first content event, ``tokens`` the number of
content events, ``itl_ms`` the mean gap between consecutive content events ((last - first) /
(tokens - 1); null below two). A stream that ends before its terminator is ``aborted``: an
OpenAI stream without ``[DONE]`` or a ``finish_reason``, or any stream whose transport failed
half-way. A plain SSE stream (no OpenAI chunk seen) has no terminator of its own: its clean
end is its end, but a stream that ended before any event is aborted. The first event's
data is kept (``first_data``) so the version can be read from it (``--tag-json model``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

#: The media type of a streamed answer.
EVENT_STREAM = "text/event-stream"
#: The error class of a stream that ended before its terminator.
STREAM_ABORTED = "stream_aborted"
#: The data of OpenAI's terminating event.
DONE = "[DONE]"
#: The longest line kept (bytes): the rest of a longer line is dropped, so a target that
#: never ends a line cannot grow the parser's buffer past this.
DEFAULT_MAX_LINE_BYTES = 1 << 20

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"
#: Delta fields whose non-empty text is a token (``reasoning_content``: vLLM, DeepSeek).
_DELTA_TEXT = ("content", "reasoning_content")


def is_event_stream(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value names an event stream (parameters ignored)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == EVENT_STREAM


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``message`` unless named), data and last event id."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Incremental event-stream parser: ``feed`` bytes as they come, get whole events."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._skip_lf = False  # the last chunk ended with CR: an LF first is part of it
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._started = False  # a BOM is dropped only at the very start

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk`` (possibly none)."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            lines = _LINE_END.split(buf)
            self._skip_lf = buf.endswith(b"\r")
        else:
            lines = buf.split(b"\n")
        rest = lines.pop()
        self._buf = rest if len(rest) <= self.max_line_bytes else rest[: self.max_line_bytes]
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw[: self.max_line_bytes])
            if event is not None:
                events.append(event)
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            if line.startswith(_BOM):
                line = line[1:]
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # retry and unknown fields change nothing measured

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(event or "message", "\n".join(data), self._id)


@dataclass(frozen=True)
class StreamFigures:
    """What one streamed answer measured (the sample's stream columns, and whether it ended)."""

    ttft_ms: float | None
    tokens: int
    itl_ms: float | None
    #: The terminator came (OpenAI), or a plain stream ended cleanly.
    complete: bool
    #: The first event's data (for tagging), or None when no event came.
    first_data: str | None


def _openai_chunk(data: str) -> dict[str, Any] | None:
    """The event's JSON object when it is an OpenAI-compatible chunk (has a choices list)."""
    if not data.startswith("{"):
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("choices"), list):
        return doc
    return None


def _choice_text(choice: Any) -> bool:
    """Whether a choice carries a token: non-empty delta content (chat) or text (legacy)."""
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for key in _DELTA_TEXT:
            text = delta.get(key)
            if isinstance(text, str) and text:
                return True
    text = choice.get("text")
    return isinstance(text, str) and bool(text)


def classify(data: str) -> tuple[bool, bool, bool]:
    """``(content, ends, openai)`` of one event's data: whether it is a content event,
    whether it terminates the stream, and whether it is an OpenAI-compatible chunk."""
    if data == DONE:
        return False, True, True
    doc = _openai_chunk(data)
    if doc is None:
        return bool(data), False, False
    choices = doc["choices"]
    content = any(_choice_text(c) for c in choices)
    ends = any(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)
    return content, ends, True


class StreamMeter:
    """Measures one streamed answer: ``feed(chunk, at_ms)`` per body chunk (``at_ms``: when it
    arrived, in ms since the request was sent), then ``figures(clean_end)``."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.parser = SSEParser(max_line_bytes)
        self.tokens = 0
        self.first_ms: float | None = None
        self.last_ms: float | None = None
        self.openai = False
        self.done = False
        self.first_data: str | None = None
        #: Body bytes fed so far.
        self.bytes = 0

    def feed(self, chunk: bytes, at_ms: float) -> None:
        """Take one body chunk that arrived ``at_ms`` after the request was sent."""
        self.bytes += len(chunk)
        for event in self.parser.feed(chunk):
            self.event(event.data, at_ms)

    def event(self, data: str, at_ms: float) -> None:
        """Take one event's data (for callers that parse SSE themselves)."""
        if self.first_data is None:
            self.first_data = data
        if self.done:
            return  # after the terminator nothing counts
        content, ends, openai = classify(data)
        self.openai = self.openai or openai
        if content:
            self.tokens += 1
            if self.first_ms is None:
                self.first_ms = at_ms
            self.last_ms = at_ms
        if ends:
            self.done = True

    def figures(self, clean_end: bool) -> StreamFigures:
        """The figures so far; ``clean_end``: the body ended without a transport failure
        (False for a cut, a timeout or a body over its bound)."""
        itl = None
        if self.tokens >= 2 and self.first_ms is not None and self.last_ms is not None:
            itl = (self.last_ms - self.first_ms) / (self.tokens - 1)
        seen = self.first_data is not None
        complete = self.done or (clean_end and seen and not self.openai)
        return StreamFigures(self.first_ms, self.tokens, itl, complete, self.first_data)
