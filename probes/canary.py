"""The canary probe: an open-model sender at a constant rate, every response a sample row.

Open model (vegeta, wrk2): request ``i`` is *due* at ``start + i / rate`` whatever the
target does, so a slow target cannot slow the probe down and hide its own slowness
(coordinated omission). Each row records ``intended_ts`` (when it was due) and ``ts``
(when it really left); ``ts - intended_ts`` is the probe's own lateness.

A bound on requests in flight (``max_in_flight``) keeps a stalled target from eating every
socket. When the bound is hit, the due request is **not sent** and is recorded at once as
an error row of class ``client_saturated`` (``status`` 0, ``ts = intended_ts``,
``latency_ms`` 0): the schedule stays intact, the row count stays ``rate × duration``, and
the report shows that callers would not have been answered. Sending it late instead would
bunch requests after a stall and hide the stall's length.

Failures are rows, never exceptions: transport failures get ``status`` 0 and a class from
``records.ERROR_CLASSES`` (``timeout``, ``connect``, ``reset``, ``protocol``,
``client_limit``, ``other``), HTTP errors keep their status with ``http_5xx``/``http_4xx``.

What one request may cost is bounded whatever the target sends: the request timeout bounds
the whole exchange (connect, head and every body read together, not each read); the probe
keeps at most ``max_body_bytes`` of a body (enough for tagging) and reads the rest without
keeping it, up to ``max_drain_bytes``, past which it closes the connection and records
``body_too_large``; response headers may be as large as real servers send
(``MAX_HEADER_BYTES``). A run ends at most ``end_grace_s`` after its last request was due
(after a stop: ``drain_s``); requests still in flight then are recorded as ``interrupted``.

Streamed answers (``Content-Type: text/event-stream``, ``probes.streaming``): each body chunk is
fed to a ``StreamMeter`` the moment it arrives, before anything else is done with it, so the
row carries ``ttft_ms`` (send to the first content event), ``tokens`` and ``itl_ms``;
``latency_ms`` stays send to last byte. The version is read from the headers, else from the
first event's data (``--tag-json model``). A stream that ends (cleanly or by a broken
connection) before its terminator is ``stream_aborted``; one that outlives the timeout is a
``timeout``; one past the drain bound ``body_too_large``: each keeps the status that arrived
and its figures so far. The body bounds hold as for any body (the meter keeps one line).

Connection modes (``connections``): ``reused`` sends over a keep-alive pool (what most
callers do); ``new`` opens a fresh connection per request and closes it after the answer
(what a caller without keep-alive, or behind a load balancer that closes them, sees);
``both`` interleaves the two on one schedule — even requests ``reused``, odd ones ``new``,
each stream at half the rate — so a rollout's effect on each is measured at the same
moments. Every row carries its mode (``conn_mode``) and the connection that carried it
(``conn``: local ``host:port#n``, n numbering the process's connections, known for
failures on an open connection too). The pacer, lateness, the in-flight bound and the
error classes are the same in every mode.

The transport (``aiohttp``, the default) is aiohttp's ``ClientSession``, called directly: the
httpx layer on top of it (``httpx-aiohttp``) cost 0.44 ms of latency and ~280 µs of CPU per
request (build_request, send, aread). httpx's own transport stays selectable
(``transport="httpx"``) for the benchmark that chose between them (see BENCHMARKS.md);
httpx remains the control plane's client.

Everything slow at start-up is done before the first request is due (before the schedule's
clock ``mono0`` is read): the clients and their pools are made, and the shard writer's first
table conversion and Parquet write (which import pandas) are paid with a throw-away row
(``records.warm_writer``). Otherwise the run's first seconds would measure the probe's own
imports as lateness. ``_Probe.startup`` lists those steps in order, for the test that checks
it.

While a probe runs, Python's cyclic garbage collector is kept quiet (``quiet_gc``): what
start-up made (pandas and pyarrow's modules, the sessions) is frozen out of the collector's
view, and the youngest generation is collected every ``GC_YOUNG_THRESHOLD`` allocations
instead of every 700. Otherwise each full collection walked pandas' objects for ~50 ms and
the young ones ran ~250 times a second at 6,000 req/s: bursts of lateness that filled the
in-flight bound (measured: at 6,000 req/s, 830 ms of collection in a 4 s run, lateness p99
70-87 ms; quiet, 40 ms and 23-35 ms). Nothing is kept longer than the run: at its end the
thresholds are restored and the frozen objects handed back to the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import gc
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from probes.records import CONN_MODES, Sample, ShardWriter, http_error_class, warm_writer
from probes.run import worker_name
from probes.settings import MAX_TIMEOUT_S, RequestSpec
from probes.streaming import STREAM_ABORTED, StreamFigures, StreamMeter, is_event_stream
from probes.tagging import tag

#: Error class of a due request that was not sent because ``max_in_flight`` were outstanding.
SATURATED = "client_saturated"
TRANSPORTS = ("aiohttp", "httpx")
#: ``connections`` settings: a mode of ``records.CONN_MODES``, or ``both`` interleaved.
CONNECTIONS = (*CONN_MODES, "both")
DEFAULT_MAX_IN_FLIGHT = 256
#: The scheduler wakes at least this often, so a stop request is seen promptly.
MAX_SLEEP_S = 0.1
#: The scheduler's shortest sleep on a loop with millisecond timers (``timer_floor``).
UVLOOP_FLOOR_S = 0.001
#: Of a body, this much is kept (for tagging); the rest is read and counted, not kept.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: A body that goes on past this is cut: the connection is closed (``body_too_large``).
DEFAULT_MAX_DRAIN_BYTES = 64 << 20
#: Longest header line (and status line) and most header lines accepted in a response: at
#: least what Locust's clients take (http.client: 64 KiB lines, 100 headers), above what
#: real servers send; aiohttp's own defaults (8 KiB) refuse a 10 KB cookie or CSP header.
MAX_HEADER_BYTES = 128 << 10
MAX_HEADERS = 256
#: Most requests one run may schedule (31 years at 1,000/s): beyond, counts overflow.
MAX_REQUESTS = 1e12
#: ``bytes`` is an int32 column.
MAX_BYTES_VALUE = 2**31 - 1
#: Error classes the probe itself records (records.ERROR_CLASSES has them all).
CLIENT_LIMIT = "client_limit"
BODY_TOO_LARGE = "body_too_large"
INTERRUPTED = "interrupted"

#: The cyclic GC's youngest-generation threshold while a probe runs (CPython's default: 700).
GC_YOUNG_THRESHOLD = 10_000

OnSample = Callable[[Sample], None]


# --------------------------------------------------------------------------- pacer (pure)


def intended_offset(i: int, rate: float) -> float:
    """Seconds after the start at which request ``i`` (0-based) is due at ``rate`` per second.

    Computed from ``i`` directly rather than by adding intervals, so no error accumulates.
    """
    return i / rate


def intended_time(i: int, rate: float, start: float) -> float:
    """The clock value at which request ``i`` is due, for a schedule starting at ``start``."""
    return start + i / rate


def request_count(duration: float, rate: float) -> int:
    """How many requests a run of ``duration`` seconds schedules: those due before its end."""
    if duration <= 0 or rate <= 0:
        return 0
    n = math.ceil(duration * rate - 1e-9)
    return max(n, 0)


def due_through(elapsed: float, rate: float) -> int:
    """How many requests are due ``elapsed`` seconds after the start (request 0 is due at 0)."""
    if elapsed < 0:
        return 0
    return math.floor(elapsed * rate + 1e-9) + 1


# --------------------------------------------------------------------------- settings, stats


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe sends: rate, in-flight bound, duration, and which transport."""

    rate: float
    duration: float
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    transport: str = "aiohttp"
    #: On a stop request, wait this long at most for requests in flight before dropping them.
    drain_s: float = 2.0
    source: str = "probe"
    worker: str = field(default_factory=lambda: worker_name("probe"))
    #: Bytes of a body kept for tagging (``--max-body-bytes``); the rest is counted, not kept.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Bytes of a body read at most; beyond, the connection is closed (``body_too_large``).
    max_drain_bytes: int = DEFAULT_MAX_DRAIN_BYTES
    #: At a normal end, wait this long at most for requests in flight (None: the request
    #: timeout + ``drain_s``, every request having its own timeout); the rest are
    #: recorded as ``interrupted``. A run thus always ends by duration + this grace.
    end_grace_s: float | None = None
    #: ``reused`` (a keep-alive pool), ``new`` (a connection per request) or ``both``
    #: (interleaved, half the rate each; see the module docstring).
    connections: str = "reused"

    @property
    def modes(self) -> tuple[str, ...]:
        """The connection mode of request ``i`` is ``modes[i % len(modes)]``."""
        return CONN_MODES if self.connections == "both" else (self.connections,)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("rate must be a finite number > 0")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError("duration must be a finite number > 0")
        if self.duration * self.rate > MAX_REQUESTS:  # a count the pacer can still compute
            raise ValueError(f"duration x rate must be at most {MAX_REQUESTS:g} requests")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        if self.connections not in CONNECTIONS:
            raise ValueError(f"connections must be one of {', '.join(CONNECTIONS)}")
        if not 0 <= self.max_body_bytes <= self.max_drain_bytes:
            raise ValueError("max_body_bytes must be from 0 to max_drain_bytes")
        for name in ("drain_s", "end_grace_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")

    def grace_s(self, timeout: float) -> float:
        """How long a normal end waits for requests in flight (see ``end_grace_s``)."""
        if self.end_grace_s is not None:
            return self.end_grace_s
        return min(timeout, MAX_TIMEOUT_S) + self.drain_s


@dataclass
class ProbeStats:
    """What one probe run did, for the manifest and the caller."""

    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    #: Requests in flight when the drain (or end grace) ran out: recorded as ``interrupted``.
    abandoned: int = 0
    stopped_early: bool = False
    started_ts: float = 0.0
    ended_ts: float = 0.0

    def count(self, sample: Sample) -> None:
        if sample.error is None:
            self.ok += 1
        else:
            self.errors[sample.error] += 1
        self.versions[sample.version] += 1

    @property
    def recorded(self) -> int:
        return self.ok + sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "recorded": self.recorded,
            "ok": self.ok,
            "errors": dict(self.errors),
            "versions": dict(self.versions),
            "abandoned": self.abandoned,
            "stopped_early": self.stopped_early,
            "started_ts": self.started_ts,
            "ended_ts": self.ended_ts,
        }


# --------------------------------------------------------------------------- error classes


def _os_error_class(exc: OSError) -> str | None:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if exc.errno in (
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EADDRNOTAVAIL,
    ):
        return "connect"
    import socket

    if isinstance(exc, socket.gaierror):
        return "connect"
    return None


#: What clients say when a response breaks one of their limits (aiohttp's parsers, h11).
_LIMIT_WORDS = ("got more than", "too many headers", "too many trailers", "buffer too long")


def _limit_class(exc: BaseException) -> str | None:
    """``client_limit`` when a response was refused by a limit of our client, not as bad HTTP."""
    try:
        from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return None
    if isinstance(exc, LineTooLong):
        return CLIENT_LIMIT
    if isinstance(exc, HttpProcessingError | httpx.RemoteProtocolError):
        text = str(exc).lower()
        if any(word in text for word in _LIMIT_WORDS):
            return CLIENT_LIMIT
    return None


def _aiohttp_class(exc: BaseException) -> str | None:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return None
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "reset"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "protocol"
    if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
        return "protocol"
    return None


def _httpx_class(exc: BaseException) -> str | None:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        # httpcore's wording when the peer closed before answering: a reset, not bad HTTP.
        return "reset" if "disconnected" in str(exc).lower() else "protocol"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return "reset"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return "protocol"
    return None


def error_class(exc: BaseException) -> str:
    """The sample ``error`` class of a transport failure.

    The innermost cause decides: httpx-aiohttp maps every aiohttp connection error to
    ``httpx.ConnectTimeout``, so the outer type alone would call a refused connection or a
    reset a timeout. The original exception is kept as ``__cause__``/``__context__``.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < 16:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for item in reversed(chain):
        cls: str | None = None
        if isinstance(item, OSError):
            cls = _os_error_class(item)
        cls = cls or _limit_class(item) or _aiohttp_class(item) or _httpx_class(item)
        if cls:
            return cls
    return "other"


def timer_floor(loop: asyncio.AbstractEventLoop) -> float:
    """The pacer's shortest sleep on ``loop``: 0 on asyncio's own loops, ``UVLOOP_FLOOR_S``
    on others (uvloop).

    uvloop's clock (``loop.time()``) and timers are libuv's: whole milliseconds, the clock
    read once per loop turn. A sleep under 0.5 ms rounds to 0, and the stale clock says the
    next request is not due yet, so above 1,000 req/s a pacer sleeping exactly until the next
    due time spins (measured at 3,000 req/s: 185,000-241,000 sleeps in 3 s, 355 µs of CPU per
    request against 243-277 on asyncio's loop). With a 1 ms floor it wakes about once per
    millisecond and sends what is due then (2,200-2,400 sleeps, 220-232 µs); the lateness
    this adds (p50 +0.6 ms there) is recorded as lateness like any other."""
    return 0.0 if isinstance(loop, asyncio.BaseEventLoop) else UVLOOP_FLOOR_S


# --------------------------------------------------------------------------- the GC


_gc_lock = threading.Lock()
#: Probes running in this process inside ``quiet_gc``; the first saves, the last restores.
_gc_users = 0
_gc_saved: tuple[int, int, int] = (700, 10, 10)
_gc_froze = False


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Keep the cyclic GC quiet while a probe runs (see the module docstring).

    ``gc.freeze()`` moves every object alive now into a generation the collector never walks
    (an O(1) splice: no pause); objects are still freed by reference counting as usual. The
    youngest generation's threshold is raised to ``GC_YOUNG_THRESHOLD`` (kept if already
    higher). Probes running at once in one process (the service, ``probes load``) share one
    quiet period: the first to enter saves the settings, the last to leave restores them and
    ``gc.unfreeze()``s, so cycles frozen meanwhile are collected after all. A freeze made by
    someone else (``gc.get_freeze_count()`` already > 0) is left as it is.
    """
    global _gc_users, _gc_saved, _gc_froze
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            _gc_froze = gc.get_freeze_count() == 0
            if _gc_froze:
                gc.freeze()
            young, *older = _gc_saved
            gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)
                if _gc_froze:
                    gc.unfreeze()


# --------------------------------------------------------------------------- transport


def make_client(
    transport: str, max_in_flight: int, timeout: float, *, tls: bool = True, fresh: bool = False
) -> httpx.AsyncClient:
    """An httpx client on the chosen transport, with a pool as large as the in-flight bound.

    ``tls=False`` (plain http targets) skips loading the CA bundle, which costs ~0.2 s of
    CPU per client. Proxies from the environment are ignored: a probe measures the path to
    the target, and a proxy in between would be measured instead. ``fresh``: no keep-alive,
    every request on a new connection that is closed after it (connection mode ``new``).
    """
    keep = 0 if fresh else max_in_flight
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=keep)
    if transport == "aiohttp":
        return httpx.AsyncClient(
            transport=_aiohttp_transport(limits, tls, fresh=fresh),
            timeout=timeout,
            trust_env=False,
        )
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False, verify=tls)


def no_silent_retry(session: Any) -> Any:
    """Turn off aiohttp's silent re-send of idempotent requests on a reused connection.

    aiohttp re-sends a GET/HEAD/PUT/DELETE/OPTIONS/TRACE once, unseen, when a *reused*
    keep-alive connection turns out reset or closed (RFC 9112 §9.3.1). A client library may
    do that; a probe may not: the caller of the target would have seen the failure, and the
    probe must record it (a request cut at a switch is exactly what it looks for). The switch
    is ``ClientSession._retry_connection``, a private attribute (aiohttp 3.x): hasattr keeps
    a future aiohttp without it working, and tests/test_canary.py fails if the retry is back.
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


@functools.cache
def _session_takes(name: str) -> bool:
    import inspect

    import aiohttp

    return name in inspect.signature(aiohttp.ClientSession.__init__).parameters


#: Set by a request task: the connector appends the identity of the connection it hands out.
_CONN_BOX: contextvars.ContextVar[list[str]] = contextvars.ContextVar("probe_conn")
#: Connection numbers, unique within the process (``host:port#n``: a port may be reused).
_CONN_SEQ = itertools.count(1)


class _ConnNames:
    """Names of a connector's open connections, by protocol object.

    aiohttp's protocol objects have ``__slots__`` (no attribute, no weak reference), so the
    table keeps them and forgets closed ones whenever it has doubled since the last sweep.
    """

    def __init__(self) -> None:
        self.names: dict[int, tuple[Any, str]] = {}
        self.sweep_at = 64

    def name(self, proto: Any) -> str | None:
        held = self.names.get(id(proto))
        if held is not None and held[0] is proto:
            return held[1]
        transport = getattr(proto, "transport", None)
        addr = transport.get_extra_info("sockname") if transport is not None else None
        if not addr:
            return None
        name = f"{addr[0]}:{addr[1]}#{next(_CONN_SEQ)}"
        self.names[id(proto)] = (proto, name)
        if len(self.names) >= self.sweep_at:
            for key, (p, _) in list(self.names.items()):
                if getattr(p, "transport", None) is None:
                    del self.names[key]
            self.sweep_at = max(64, 2 * len(self.names))
        return name


def _aiohttp_transport(
    limits: httpx.Limits, tls: bool, *, fresh: bool = False
) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp's transport on an aiohttp session of our own: it never re-sends a request
    silently, it accepts response headers as large as real servers send, and it names the
    connection each request gets (``_CONN_BOX``), failed requests included."""
    from httpx_aiohttp import AiohttpTransport

    class ProbeTransport(AiohttpTransport):
        def get_client(self) -> Any:
            # As httpx-aiohttp builds it (a TCP connector sized by the pool limits), plus the
            # header limits, which are ClientSession arguments; ``fresh``: no keep-alive.
            return _session(
                self.limits.max_connections or 0,
                self.ssl_context,
                fresh=fresh,
                keepalive_timeout=self.limits.keepalive_expiry,
            )

    return ProbeTransport(limits=limits, verify=tls)


def make_session(max_in_flight: int, *, tls: bool = True, fresh: bool = False) -> Any:
    """The probe's aiohttp session (transport ``aiohttp``), made on the running loop: a pool as
    large as the in-flight bound, no silent retry, header limits as large as real servers
    send, every connection named (``_CONN_BOX``); ``fresh``: no keep-alive (mode ``new``).
    No aiohttp timeout: the probe's own deadline bounds the whole exchange."""
    import ssl

    ctx: Any = ssl.create_default_context() if tls else False
    return _session(max_in_flight, ctx, fresh=fresh, keepalive_timeout=5.0)


def _session(limit: int, ssl_context: Any, *, fresh: bool, keepalive_timeout: float | None) -> Any:
    import aiohttp

    connector = _connector_class()(
        keepalive_timeout=None if fresh else keepalive_timeout,
        force_close=fresh,
        ssl=ssl_context,
        limit=limit,
    )
    sizes: dict[str, Any] = {
        "max_line_size": MAX_HEADER_BYTES,
        "max_field_size": MAX_HEADER_BYTES,
    }
    if _session_takes("max_headers"):  # aiohttp >= 3.13.4; before, no count limit
        sizes["max_headers"] = MAX_HEADERS
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), **sizes
    )
    return no_silent_retry(session)


@functools.cache
def _connector_class() -> Any:
    import aiohttp

    class ProbeConnector(aiohttp.TCPConnector):
        """Names each connection it hands out into the requesting task's ``_CONN_BOX``."""

        names = _ConnNames()

        async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
            conn = await super().connect(req, traces, timeout)
            box = _CONN_BOX.get(None)
            if box is not None:
                name = self.names.name(conn.protocol)
                if name is not None:
                    box.append(name)
            return conn

    return ProbeConnector


def _conn_identity(response: httpx.Response) -> str | None:
    """The local ``host:port`` of the connection that carried the response, if cheap to get."""
    try:
        stream = response.stream
        inner = getattr(stream, "_stream", stream)  # httpx wraps it in BoundAsyncStream
        raw = getattr(inner, "_aiohttp_response", None)  # httpx-aiohttp keeps it here
        if raw is not None:
            # The connection is already released when a small body arrived with the head;
            # the protocol object (one per connection) still knows its socket.
            proto = getattr(raw, "_protocol", None)
            transport = getattr(proto, "transport", None)
            addr = transport.get_extra_info("sockname") if transport is not None else None
        else:
            net = response.extensions.get("network_stream")
            addr = net.get_extra_info("client_addr") if net is not None else None
        if addr:
            return f"{addr[0]}:{addr[1]}"
    except Exception:  # identity is a nicety; never let it fail a request
        return None
    return None


def _declared_size(headers: Any, read: int) -> int:
    """A cut body's true size: its Content-Length when that counts the bytes we count (no
    content coding, which would count the compressed bytes), else what was read."""
    declared = headers.get("content-length", "").strip()
    coded = headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    return int(declared) if declared.isdigit() and not coded and int(declared) > read else read


def _plain_headers(response: httpx.Response) -> dict[str, str]:
    """Response headers as a plain dict with lower-case names, for tagging.

    ``httpx.Headers.get`` re-detects the header encoding on every lookup, which cost more
    than the rest of tagging at 2,000 req/s; one pass over the raw pairs is enough, and
    lower-case names let ``tagging.tag`` look them up without another copy.
    """
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers.raw}


# --------------------------------------------------------------------------- the probe


class _Probe:
    """One run of the probe: the scheduler loop plus one task per request."""

    def __init__(
        self,
        spec: RequestSpec,
        settings: ProbeSettings,
        writer: ShardWriter | None,
        on_sample: OnSample | None,
        stop: threading.Event | asyncio.Event | None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.writer = writer
        self.on_sample = on_sample
        self.stop = stop
        self.stats = ProbeStats()
        self.headers = spec.request_headers()
        self.url = httpx.URL(spec.url)  # parsed once, not per request
        self.name = spec.name
        self.method = spec.method
        self.body = spec.body
        # Clamped so that a deadline can always be computed (the CLI allows at most this).
        self.timeout = min(spec.timeout, MAX_TIMEOUT_S)
        self.in_flight: set[asyncio.Task[None]] = set()
        #: Set when the drain ran out: requests cancelled from then on are ``interrupted`` rows.
        self.abandoning = False
        #: The start-up steps in the order they were done (``mono0``: the schedule's start).
        self.startup: list[str] = []
        self.send: Callable[..., Any] = self._send
        self.aio_url: Any = None

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _emit(self, sample: Sample) -> None:
        self.stats.count(sample)
        if self.writer is not None:
            self.writer.add(sample)
        if self.on_sample is not None:
            self.on_sample(sample)

    def _row(
        self,
        ts: float,
        intended: float,
        latency_ms: float,
        status: int,
        error: str | None,
        version: str = "unknown",
        tag_source: str = "none",
        size: int = 0,
        conn: str | None = None,
        mode: str = "reused",
        stream: StreamFigures | None = None,
    ) -> Sample:
        s = self.settings
        if stream is not None:
            return Sample(
                ts, intended, latency_ms, s.source, s.worker, self.spec.method, self.name,
                status, error, version, tag_source, size, conn, mode,
                stream.ttft_ms, stream.tokens, stream.itl_ms,
            )  # fmt: skip
        return Sample(
            ts,
            intended,
            latency_ms,
            s.source,
            s.worker,
            self.spec.method,
            self.name,
            status,
            error,
            version,
            tag_source,
            size,
            conn,
            mode,
        )

    def _failed(
        self, ts: float, intended: float, t0: float, cls: str, box: list[str], mode: str
    ) -> None:
        """The row of a request that failed (or was interrupted) after ``t0``: its connection
        is the one the connector named (None: no connection was made)."""
        latency = (time.perf_counter() - t0) * 1000.0
        failed_on = box[-1] if box else None
        self._emit(self._row(ts, intended, latency, 0, cls, conn=failed_on, mode=mode))

    def _stream_failed(
        self,
        ts: float,
        intended: float,
        t0: float,
        cls: str,
        head: tuple[int, Any],
        meter: StreamMeter,
        box: list[str],
        mode: str,
    ) -> None:
        """The row of a stream whose body failed after its head (status and headers) came:
        the status is kept, the version read, the figures so far kept. A timeout stays a
        timeout; any other failure before the terminator is ``stream_aborted``."""
        latency = (time.perf_counter() - t0) * 1000.0
        status, headers = head
        figures = meter.figures(clean_end=False)
        if cls not in ("timeout", INTERRUPTED):
            cls = http_error_class(status) or "" if figures.complete else STREAM_ABORTED
        version, source = tag(headers, figures.first_data, self.spec.tag_rules)
        conn = box[-1] if box else None
        size = min(meter.bytes, MAX_BYTES_VALUE)
        row = self._row(ts, intended, latency, status, cls or None, version, source, size, conn,
                        mode, figures)  # fmt: skip
        self._emit(row)

    def _answer_row(
        self,
        ts: float,
        intended: float,
        latency: float,
        head: tuple[int, Any],
        read: tuple[bytes, int, bool],
        meter: StreamMeter | None,
        conn: str | None,
        mode: str,
    ) -> Sample:
        """The row of an answer read to its end (or cut at the drain bound): a stream is
        tagged from its first event, and is ``stream_aborted`` when its terminator never came."""
        status, headers = head
        body, size, whole = read
        error = http_error_class(status) if whole else BODY_TOO_LARGE
        if meter is None:
            version, source = tag(headers, body, self.spec.tag_rules)
            return self._row(
                ts, intended, latency, status, error, version, source, size, conn, mode
            )
        figures = meter.figures(clean_end=whole)
        if error is None and not figures.complete:
            error = STREAM_ABORTED
        version, source = tag(headers, figures.first_data, self.spec.tag_rules)
        return self._row(ts, intended, latency, status, error, version, source, size, conn, mode,
                         figures)  # fmt: skip

    async def _send_aiohttp(
        self, session: Any, mode: str, intended: float, wall0: float, mono0: float
    ) -> None:
        """One request on aiohttp's session (transport ``aiohttp``): the same row as ``_send``."""
        box: list[str] = []
        _CONN_BOX.set(box)  # this task's own context: the connector names its connection here
        streams: list[StreamMeter] = []  # the answer's meter, once its head says it streams
        head: tuple[int, Any] = (0, None)
        t0 = time.perf_counter()
        ts = wall0 + (time.monotonic() - mono0)
        try:
            # One deadline for the whole exchange: connect, head and every body read.
            async with asyncio.timeout(self.timeout):
                response = await session.request(
                    self.method,
                    self.aio_url,
                    headers=self.headers,
                    data=self.body,
                    allow_redirects=False,
                )
                head = (response.status, response.headers)
                whole = False
                try:
                    if response.content_type == "text/event-stream":
                        streams.append(StreamMeter())
                    read = await self._read_aiohttp(response, streams, t0)
                    whole = read[2]
                finally:
                    if whole:
                        response.release()
                    else:
                        response.close()  # the body was cut (or failed): drop the connection
        except asyncio.CancelledError:
            if self.abandoning:  # the drain ran out: a row, not a silent loss
                self._failed_any(ts, intended, t0, INTERRUPTED, head, streams, box, mode)
            raise
        except Exception as exc:  # a failed request is a row
            self._failed_any(ts, intended, t0, error_class(exc), head, streams, box, mode)
            return
        latency = (time.perf_counter() - t0) * 1000.0
        conn = box[-1] if box else None
        meter = streams[0] if streams else None
        self._emit(self._answer_row(ts, intended, latency, head, read, meter, conn, mode))

    def _failed_any(
        self,
        ts: float,
        intended: float,
        t0: float,
        cls: str,
        head: tuple[int, Any],
        streams: list[StreamMeter],
        box: list[str],
        mode: str,
    ) -> None:
        """``_stream_failed`` when the answer was a stream, else ``_failed``."""
        if streams:
            self._stream_failed(ts, intended, t0, cls, head, streams[0], box, mode)
        else:
            self._failed(ts, intended, t0, cls, box, mode)

    async def _read_aiohttp(
        self, response: Any, streams: list[StreamMeter], t0: float
    ) -> tuple[bytes, int, bool]:
        """``_read_body`` on an aiohttp response."""
        keep, limit = self.settings.max_body_bytes, self.settings.max_drain_bytes
        content = response.content
        meter = streams[0] if streams else None
        chunks: list[bytes] = []
        kept = read = 0
        while True:
            chunk = await content.readany()
            if not chunk:
                break
            if meter is not None:  # its arrival time, before anything else is done with it
                meter.feed(chunk, (time.perf_counter() - t0) * 1000.0)
            read += len(chunk)
            if kept < keep:
                part = chunk if len(chunk) <= keep - kept else chunk[: keep - kept]
                chunks.append(part)
                kept += len(part)
            if read > limit:
                size = _declared_size(response.headers, read)
                return b"".join(chunks), min(size, MAX_BYTES_VALUE), False
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return body, min(read, MAX_BYTES_VALUE), True

    async def _send(
        self, client: httpx.AsyncClient, mode: str, intended: float, wall0: float, mono0: float
    ) -> None:
        spec = self.spec
        box: list[str] = []
        _CONN_BOX.set(box)  # this task's own context: the connector names its connection here
        streams: list[StreamMeter] = []  # the answer's meter, once its head says it streams
        head: tuple[int, Any] = (0, None)
        t0 = time.perf_counter()
        ts = wall0 + (time.monotonic() - mono0)
        try:
            # One deadline for the whole exchange: connect, head and every body read.
            async with asyncio.timeout(self.timeout):
                request = client.build_request(
                    spec.method, self.url, headers=self.headers, content=spec.body
                )
                response = await client.send(request, stream=True)
                head = (response.status_code, _plain_headers(response))
                try:
                    conn = box[-1] if box else _conn_identity(response)
                    if is_event_stream(head[1].get("content-type")):
                        streams.append(StreamMeter())
                    read = await self._read_body(response, streams, t0)
                finally:
                    await response.aclose()  # closes the connection when the body was cut
        except asyncio.CancelledError:
            if self.abandoning:  # the drain ran out: a row, not a silent loss
                self._failed_any(ts, intended, t0, INTERRUPTED, head, streams, box, mode)
            raise
        except Exception as exc:  # a failed request is a row
            self._failed_any(ts, intended, t0, error_class(exc), head, streams, box, mode)
            return
        latency = (time.perf_counter() - t0) * 1000.0
        meter = streams[0] if streams else None
        self._emit(self._answer_row(ts, intended, latency, head, read, meter, conn, mode))

    async def _read_body(
        self, response: httpx.Response, streams: list[StreamMeter], t0: float
    ) -> tuple[bytes, int, bool]:
        """``(head, size, whole)``: the body's first ``max_body_bytes`` (for tagging), its size,
        and whether it ended within ``max_drain_bytes``. Memory stays within the first bound
        whatever the target sends; a cut body's size is its Content-Length where given. A
        stream's chunks go to its meter (``streams``) with their arrival times."""
        keep, limit = self.settings.max_body_bytes, self.settings.max_drain_bytes
        meter = streams[0] if streams else None
        chunks: list[bytes] = []
        kept = read = 0
        async for chunk in response.aiter_bytes():
            if meter is not None:  # its arrival time, before anything else is done with it
                meter.feed(chunk, (time.perf_counter() - t0) * 1000.0)
            read += len(chunk)
            if kept < keep:
                part = chunk if len(chunk) <= keep - kept else chunk[: keep - kept]
                chunks.append(part)
                kept += len(part)
            if read > limit:
                size = _declared_size(response.headers, read)
                return b"".join(chunks), min(size, MAX_BYTES_VALUE), False
        return b"".join(chunks), min(read, MAX_BYTES_VALUE), True

    async def run(self) -> ProbeStats:
        s = self.settings
        total = request_count(s.duration, s.rate)
        loop = asyncio.get_running_loop()
        tls = self.url.scheme == "https"
        modes = s.modes
        async with contextlib.AsyncExitStack() as stack:
            clients: list[Any]
            if s.transport == "aiohttp":
                self.aio_url = _aiohttp_url(self.url)
                self.send = self._send_aiohttp
                clients = [
                    await stack.enter_async_context(
                        make_session(s.max_in_flight, tls=tls, fresh=mode == "new")
                    )
                    for mode in modes
                ]
            else:
                self.send = self._send
                clients = [
                    await stack.enter_async_context(
                        make_client(
                            s.transport, s.max_in_flight, self.timeout, tls=tls, fresh=mode == "new"
                        )
                    )
                    for mode in modes
                ]
            self.startup.append("clients")
            if self.writer is not None:
                warm_writer()  # the first Parquet write imports pandas: not while requests are due
                self.startup.append("writer_warm")
            stack.enter_context(quiet_gc())  # after start-up: what it made is frozen
            # One clock for scheduling (monotonic), mapped once to epoch seconds for the rows,
            # so a wall-clock step during the run cannot bend the schedule.
            mono0 = loop.time()
            self.startup.append("mono0")
            wall0 = time.time() - (time.monotonic() - mono0)
            self.stats.started_ts = wall0
            floor = timer_floor(loop)
            i = 0
            while i < total and not self._stopping():
                now = loop.time()
                due = min(due_through(now - mono0, s.rate), total)
                while i < due:
                    k = i % len(modes)
                    intended = wall0 + intended_offset(i, s.rate)
                    self._launch(clients[k], modes[k], intended, wall0, mono0)
                    i += 1
                if i >= total:
                    break
                wait = mono0 + intended_offset(i, s.rate) - loop.time()
                await asyncio.sleep(min(max(wait, floor), MAX_SLEEP_S))
            self.stats.scheduled = i
            self.stats.stopped_early = i < total
            await self._drain()
        self.stats.ended_ts = time.time()
        return self.stats

    def _launch(self, client: Any, mode: str, intended: float, wall0: float, mono0: float) -> None:
        if len(self.in_flight) >= self.settings.max_in_flight:
            self._emit(self._row(intended, intended, 0.0, 0, SATURATED, mode=mode))
            return
        self.stats.sent += 1
        task = asyncio.create_task(self.send(client, mode, intended, wall0, mono0))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _drain(self) -> None:
        """Wait for requests in flight: at most ``grace_s`` at a normal end (every request has
        its own timeout, so this only guards the bound), at most ``drain_s`` after a stop;
        then cancel the rest, each recorded as an ``interrupted`` row."""
        s = self.settings
        wait = s.drain_s if self._stopping() else s.grace_s(self.timeout)
        deadline = time.monotonic() + wait
        while self.in_flight:
            if self._stopping():
                deadline = min(deadline, time.monotonic() + s.drain_s)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait(set(self.in_flight), timeout=min(left, MAX_SLEEP_S))
        if self.in_flight:
            self.stats.abandoned = len(self.in_flight)
            self.abandoning = True
            for task in list(self.in_flight):
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)


def _aiohttp_url(url: httpx.URL) -> Any:
    """The target as a yarl URL, parsed once; ``encoded``: sent as written, as httpx does."""
    import yarl

    return yarl.URL(str(url), encoded=True)


async def run_probe(
    spec: RequestSpec,
    settings: ProbeSettings,
    writer: ShardWriter | None,
    *,
    stop: threading.Event | asyncio.Event | None = None,
    on_sample: OnSample | None = None,
) -> ProbeStats:
    """Probe ``spec`` at ``settings.rate`` for ``settings.duration`` seconds (or until ``stop``).

    Every request due becomes exactly one row, handed to ``writer`` (if given) and to
    ``on_sample`` (if given) on the event loop's thread. The writer is not closed here: the
    caller owns it. Returns the run's counts.
    """
    return await _Probe(spec, settings, writer, on_sample, stop).run()


def run_probe_blocking(
    spec: RequestSpec,
    settings: ProbeSettings,
    writer: ShardWriter | None,
    *,
    stop: threading.Event | None = None,
    on_sample: OnSample | None = None,
) -> ProbeStats:
    """``run_probe`` in a fresh event loop on the calling thread; returns when it ends.

    asyncio's own loop. uvloop 0.23 was measured: before ``quiet_gc`` and ``timer_floor`` it
    did not pay (probe_micro, 1,000 req/s: 520 µs CPU per request against 350; the pacer spun
    on its millisecond clock). With both, bench/canary.py's ``probe-uvloop`` (one 3 s round,
    a shared machine at load 1.4-2.6): CPU per request 0.93x asyncio's at 1,000 req/s and
    0.91x at 4,000, the same max steady rate (3,000 req/s) and lateness p50 +0.5-0.7 ms (its
    1 ms pacer floor). Not a gain worth a dependency yet: the loop stays asyncio's."""
    return asyncio.run(run_probe(spec, settings, writer, stop=stop, on_sample=on_sample))


class ProbeThread(threading.Thread):
    """The probe in a background thread with its own event loop, for verbs that do other
    work meanwhile (``probes load`` runs it beside Locust).

    ``start()``, later ``stop()`` (or let the duration run out), then ``join()``;
    ``stats`` holds the counts afterwards and ``error`` any unexpected exception.
    """

    def __init__(
        self,
        spec: RequestSpec,
        settings: ProbeSettings,
        writer: ShardWriter | None,
        *,
        on_sample: OnSample | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(name="canary-probe", daemon=True)
        self.spec = spec
        self.settings = settings
        self.writer = writer
        self.on_sample = on_sample
        self.stop_event = stop or threading.Event()
        self.stats: ProbeStats | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.stats = run_probe_blocking(
                self.spec,
                self.settings,
                self.writer,
                stop=self.stop_event,
                on_sample=self.on_sample,
            )
        except BaseException as exc:  # reported to the owner through .error
            self.error = exc

    def stop(self) -> None:
        """Ask the probe to stop scheduling and drain; returns at once."""
        self.stop_event.set()
