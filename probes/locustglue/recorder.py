"""Every Locust request becomes one version-tagged sample row: the recorder, a worker's
buffer between two reports to the master, and the store that writes the shards."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import gevent
from geventhttpclient.header import Headers

from probes.live import DEFAULT_WINDOW_S, RecentSamples, SampleRow
from probes.locustglue import CALLER_KEY, INTENDED_KEY
from probes.records import Sample, ShardWriter, http_error_class
from probes.streaming import STREAM_ABORTED, StreamFigures
from probes.tagging import DEFAULT_RULES, MAX_LABEL, TagRules, tag

#: Key of the sample rows in a worker's stats report.
REPORT_KEY = "probes_samples"
#: A worker sends its buffer early once it holds this many rows.
BATCH_ROWS = 10_000
MAX_BYTES = 2**31 - 1
#: ``request_type`` of the extra request event an ``InvokeUser`` fires per streamed answer
#: (``response_time`` = its time to first token), so Locust's own statistics show TTFT as a
#: row of its own (``TTFT <name>``). Not a request: the recorder writes no sample for it.
TTFT_REQUEST_TYPE = "TTFT"
#: Where an ``InvokeUser`` leaves a streamed answer's figures on the response it reports.
STREAM_ATTR = "_probes_stream"


class BodyTooLarge(Exception):
    """A body longer than the user reads (``user.read_bounded``): recorded ``body_too_large``."""


class StreamAborted(Exception):
    """A streamed answer that ended before its terminator: recorded ``stream_aborted``."""


def transport_error_class(exc: BaseException | None) -> str:
    """The sample ``error`` class of a request that got no HTTP response."""
    if isinstance(exc, BodyTooLarge):
        return "body_too_large"
    if isinstance(exc, StreamAborted):
        return STREAM_ABORTED
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if isinstance(cur, gevent.Timeout | TimeoutError | socket.timeout) or "Timeout" in name:
            return "timeout"
        if name == "HTTPConnectionClosed" or isinstance(
            cur, ConnectionResetError | BrokenPipeError
        ):
            return "reset"
        if isinstance(cur, ConnectionRefusedError | socket.gaierror):
            return "connect"
        if name in ("HTTPParseError", "HTTPProtocolViolationError"):
            return "protocol"
        if isinstance(cur, OSError) and cur.errno is not None:
            if cur.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                return "reset"
            if cur.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "connect"
        # geventhttpclient keeps the cause of a RetriesExceeded in ``original``.
        cur = getattr(cur, "original", None) or cur.__cause__ or cur.__context__
    return "other"


class _Headers:
    """Case-insensitive ``.get`` over geventhttpclient's Headers (a dict subclass that
    ``tagging.tag`` would otherwise copy into a lower-cased dict on every response)."""

    __slots__ = ("_h",)

    def __init__(self, headers: Any) -> None:
        self._h = headers

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self._h.get(name, default)
        except Exception:
            return default


class Recorder:
    """``events.request`` listener: one tagged sample per request, handed to ``sink``."""

    def __init__(
        self, sink: Callable[[SampleRow], None], worker: str, rules: TagRules = DEFAULT_RULES
    ) -> None:
        self.sink = sink
        self.worker = worker
        self.rules = rules

    @property
    def rules(self) -> TagRules:
        return self._rules

    @rules.setter
    def rules(self, rules: TagRules) -> None:
        self._rules = rules
        self._lower = tuple(h.lower() for h in rules.headers)

    def tag(self, headers: Any, body: bytes | None) -> tuple[str, str]:
        """``tagging.tag`` with a fast path for geventhttpclient's Headers: a dict keyed by
        lower-cased name holding ``(name, value)`` (a list of them when repeated, which
        ``tag`` would not accept either)."""
        if isinstance(headers, Headers):
            for name in self._lower:
                entry = dict.get(headers, name)
                if isinstance(entry, tuple) and isinstance(entry[1], str):
                    text = entry[1].strip()
                    if text:
                        return text[:MAX_LABEL], "header"
            return tag(None, body, self._rules)  # the header rules did not match: JSON, regex
        return tag(_Headers(headers) if headers is not None else None, body, self._rules)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if request_type == TTFT_REQUEST_TYPE:
            return  # Locust's TTFT statistics row: the answer's own event is the sample
        # Each InvokeUser is a caller of its own (``worker`` = process/user), so flips are
        # counted per caller; requests of other user classes stay on the process's name.
        worker = (context.get(CALLER_KEY) if context else None) or self.worker
        intended = context.get(INTENDED_KEY) if context else None
        status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
        stream: StreamFigures | None = getattr(response, STREAM_ATTR, None)
        if status:
            headers = getattr(response, "headers", None)
            body = getattr(response, "content", None)
            if stream is not None:  # a stream's version is in its first event, if anywhere
                body = stream.first_data.encode() if stream.first_data is not None else None
            version, tag_source = self.tag(headers, body)
            if status < 400 and exception is None:
                error = None
            else:  # an HTTP error, or a response marked as failed (a cut or late body)
                error = http_error_class(status) or transport_error_class(exception)
        else:
            version, tag_source = "unknown", "none"
            error = transport_error_class(exception)
        latency = float(response_time or 0.0)
        ts = start_time if start_time is not None else time.time() - latency / 1000
        # A plain tuple in Sample order, not a Sample: CPython's collector untracks exact
        # tuples of plain values, never NamedTuple instances, and thousands of buffered rows
        # scanned by every collection cost more than the rest of this function (measured).
        figures = (None, None, None) if stream is None else stream_columns(stream)
        row = (
            ts,
            ts if intended is None else intended,
            latency,
            "locust",
            worker,
            request_type,
            name,
            status,
            error,
            version,
            tag_source,
            min(int(response_length or 0), MAX_BYTES),
            None,
            "reused",  # Locust's clients keep their connections alive
            *figures,
        )
        self.sink(row)


def stream_columns(stream: StreamFigures) -> tuple[float | None, int, float | None]:
    """A streamed answer's sample columns: ``ttft_ms``, ``tokens``, ``itl_ms``."""
    return (stream.ttft_ms, stream.tokens, stream.itl_ms)


class WorkerBuffer:
    """A worker's rows between two reports to the master."""

    def __init__(
        self, send: Callable[[list[SampleRow]], None], batch_rows: int = BATCH_ROWS
    ) -> None:
        self.rows: list[SampleRow] = []
        self.send = send
        self.batch_rows = batch_rows
        self.sent = 0

    def add(self, sample: SampleRow) -> None:
        self.rows.append(sample)
        if len(self.rows) >= self.batch_rows:
            self.send_now()

    def drain(self) -> list[SampleRow]:
        rows, self.rows = self.rows, []
        self.sent += len(rows)
        return rows

    def send_now(self) -> None:
        rows = self.drain()
        if rows:
            self.send(rows)

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        # Same message as Locust's stats for the same requests: the counts cannot diverge.
        data[REPORT_KEY] = self.drain()


class Store:
    """Where samples end up on the master or a single process: shards plus the live window."""

    def __init__(
        self, writer: ShardWriter, window_s: float = DEFAULT_WINDOW_S, live: bool = True
    ) -> None:
        self.writer = writer
        self.recent = RecentSamples(window_s)
        #: Keep the live window only when someone can look at it (the web UI is on).
        self.live = live
        self.received = 0
        #: When the last request recorded was answered (epoch s; None before any): a
        #: standalone run ends there, not when Locust quits (the web UI idles after a stop).
        self.last_answer_ts: float | None = None

    def add_samples(self, rows: list[SampleRow]) -> None:
        """Rows in Sample order: Samples, tuples, or lists as they come off the wire."""
        self.writer.add_many(cast(list[Sample], rows))  # the writer only iterates them
        if self.live:
            self.recent.add_many(rows)
        self.received += len(rows)
        if rows:  # ts is field 0, latency_ms field 2 (Sample order)
            last = max(float(r[0]) + max(0.0, float(r[2])) / 1000.0 for r in rows)
            if self.last_answer_ts is None or last > self.last_answer_ts:
                self.last_answer_ts = last

    def add_rows(self, rows: list[Any]) -> None:
        """Rows off the wire (msgpack lists): as tuples, which the collector can untrack."""
        self.add_samples([tuple(row) for row in rows])
