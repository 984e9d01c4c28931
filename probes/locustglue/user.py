"""``InvokeUser``: the Locust user that sends the configured request to the invoke URL.

It reads bodies the way the canary probe does (``probes.canary``): at most
``--probes-max-body-bytes`` of a body is kept (enough for tagging), the rest is read and
counted without being kept, up to ``DEFAULT_MAX_DRAIN_BYTES``, past which the connection is
closed and the request recorded as ``body_too_large``; the request timeout bounds the whole
response (head and body), not each read.

A streamed answer (``Content-Type: text/event-stream``) is read as its chunks arrive, each fed
to a ``probes.streaming.StreamMeter`` with its arrival time: the sample gets ``ttft_ms``,
``tokens`` and ``itl_ms``, a stream that ends before its terminator is a failure of class
``stream_aborted``, and the version may come from the first event. For plain-Locust users the
user also fires a request event of type ``TTFT`` named ``TTFT <name>`` whose response time is
the time to first token: Locust's statistics show it as a row of its own (the recorder writes
no sample for it, and ``locust.json`` counts requests without it).
"""

from __future__ import annotations

import itertools
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, task
from locust.env import Environment
from locust.exception import StopUser

from probes.locustglue import CALLER_KEY, INTENDED_KEY
from probes.locustglue.options import _opt
from probes.locustglue.recorder import (
    STREAM_ATTR,
    TTFT_REQUEST_TYPE,
    BodyTooLarge,
    StreamAborted,
)
from probes.locustglue.wiring import state_of
from probes.run import worker_name
from probes.streaming import StreamFigures, StreamMeter, is_event_stream

_USER_IDS = itertools.count(1)
#: The error class of a slot not sent (``probes.canary.SATURATED``; the canary module, with
#: httpx and asyncio, is not imported into a Locust process for one string).
SATURATED = "client_saturated"
DEFAULT_MAX_BODY = 1 << 20
#: A body that goes on past this is cut: the connection is closed (``body_too_large``).
DEFAULT_MAX_DRAIN_BYTES = 64 << 20
READ_CHUNK = 64 << 10


def read_some(raw: Any) -> bytes:
    """What the body has now, waiting only for the first byte (a stream's chunks as they
    arrive): geventhttpclient's ``read(n)`` waits for ``n`` bytes, a whole answer's worth."""
    buffer = getattr(raw, "_body_buffer", None)
    if buffer is None:  # not the response class this knows: whole reads, coarse timing
        return bytes(raw.read(READ_CHUNK))
    first = b"" if buffer else bytes(raw.read(1))  # one recv at least, if the body goes on
    rest = bytes(buffer)
    del buffer[:]
    return first + rest


def read_bounded(
    raw: Any, keep: int, limit: int, deadline: float, meter: tuple[StreamMeter, float] | None = None
) -> tuple[bytes, int, Exception | None]:
    """``(head, size, problem)``: the first ``keep`` bytes of the body, how many were read,
    and why reading stopped early (the whole-response ``deadline`` on ``perf_counter``
    passed, or the body went past ``limit``: the connection is then closed). ``meter``: a
    stream's meter and the request's start (``perf_counter``), fed every chunk as it comes."""
    chunks: list[bytes] = []
    kept = size = 0
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError("the whole response took longer than the request timeout")
            with gevent.Timeout(left, TimeoutError("the response body did not end in time")):
                chunk = raw.read(READ_CHUNK) if meter is None else read_some(raw)
            if meter is not None and chunk:
                meter[0].feed(chunk, (time.perf_counter() - meter[1]) * 1000.0)
            if not chunk:
                return b"".join(chunks), size, None
            if kept < keep:
                chunks.append(chunk[: keep - kept])
                kept += len(chunks[-1])
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body went past {limit} bytes; the connection was closed")
    except (TimeoutError, BodyTooLarge, OSError) as exc:
        raw.release()  # not read to its end: the pool closes the connection, never reuses it
        return b"".join(chunks), size, exc
    except Exception as exc:  # a stream cut mid-body: the parser's error, not an OSError
        if meter is None:
            raise
        raw.release()
        return b"".join(chunks), size, exc


def stream_problem(figures: StreamFigures, problem: Exception | None) -> Exception | None:
    """What failed a streamed answer: a timeout or an oversized body stays as it is; any
    other end before the terminator (clean or not) is ``StreamAborted``."""
    if isinstance(problem, TimeoutError | BodyTooLarge):
        return problem
    if figures.complete:
        return None
    return StreamAborted("the stream ended before its terminator ([DONE] or finish_reason)")


class InvokeUser(FastHttpUser):
    """Sends the configured request (``--probes-*``) to the invoke URL (``--host``), in a loop.

    The bearer token comes from the environment variable named by ``--probes-token-env``
    and is only ever put in the request's headers.
    """

    def __init__(self, environment: Environment) -> None:
        spec = state_of(environment).spec_for(environment.host or self.host)
        self.network_timeout = spec.timeout
        self.connection_timeout = spec.timeout
        super().__init__(environment)
        self._spec = spec
        # An origin without a path ("http://h:1") must still request "/".
        self._url = spec.url if urlsplit(spec.url).path else spec.url + "/"
        self._headers = spec.request_headers()
        self._body = spec.body
        self._max_body = int(_opt(environment.parsed_options, "max_body_bytes", DEFAULT_MAX_BODY))
        self._context: dict[str, Any] = {CALLER_KEY: f"{worker_name('locust')}/u{next(_USER_IDS)}"}
        self._probes = state_of(environment)

    def context(self) -> dict[str, Any]:
        """The request context: names this user as the caller of its samples."""
        return self._context

    @task
    def invoke(self) -> None:
        """One request: in a loop (closed model), or at the next due slot of an open-model
        rate plan (``probes.locustglue.ratepace``; ``probes capacity --mode rate``)."""
        slots = self._probes.slot_queue()
        if slots is None:
            self.send()
            return
        due, missed = slots.take(time.time())
        for when in missed:
            self.not_sent(when)
        if due is None:
            raise StopUser()
        delay = due - time.time()
        if delay > 0:
            gevent.sleep(delay)
        self._context[INTENDED_KEY] = due
        self.send()

    def not_sent(self, due: float) -> None:
        """A slot due while every user of this process was in flight: a ``client_saturated``
        row (not a request: Locust does not count it), as the open-model probe records one."""
        recorder = self._probes.recorder
        if recorder is None:
            return
        spec = self._spec
        recorder.sink(
            (due, due, 0.0, "locust", self._context[CALLER_KEY], spec.method, spec.name, 0,
             SATURATED, "unknown", "none", 0, None, "reused")
        )  # fmt: skip

    def send(self) -> None:
        spec = self._spec
        start = time.perf_counter()
        with self.client.request(
            spec.method,
            self._url,
            name=spec.name,
            data=self._body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=self._headers,
            stream=True,  # the body is ours to read: bounded, below
            catch_response=True,
        ) as response:
            raw = getattr(response, "_response", None)
            if raw is None:  # no response (a transport error): Locust reports it as it is
                return
            streamed = is_event_stream(response.headers.get("content-type"))
            meter = (StreamMeter(), start) if streamed else None
            head, size, problem = read_bounded(
                raw, self._max_body, DEFAULT_MAX_DRAIN_BYTES, start + spec.timeout, meter
            )
            meta = response.request_meta
            figures = None
            if meter is not None:
                figures = meter[0].figures(clean_end=problem is None)
                problem = stream_problem(figures, problem)
                setattr(meta["response"], STREAM_ATTR, figures)
            # What the recorder tags (``response.content``) is the kept head, never more.
            meta["response"]._cached_content = head
            response._cached_content = head
            meta["response_time"] = (time.perf_counter() - start) * 1000
            if not meta.get("response_length"):
                meta["response_length"] = size
            if problem is not None:
                response.failure(problem)
        if figures is not None and figures.ttft_ms is not None:
            self.environment.events.request.fire(
                request_type=TTFT_REQUEST_TYPE,
                name=f"TTFT {spec.name}",
                response_time=figures.ttft_ms,
                response_length=0,
                response=None,
                exception=None,
                context=self._context,
            )
