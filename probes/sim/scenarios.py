"""Simulator configuration: knobs (all off by default) and the named scenarios bundling them.

Time units: knobs ending in ``_s``/``_seconds``/``_minutes`` of the platform (readiness
timeout, shift, drain, warmup) are *platform* time and run ``time_scale`` times faster than real
time; ``gap_ms``, ``completed_ttl`` and ``upstream_timeout`` are what callers and pollers
experience and are *real* (wall-clock) time; latencies (``*_latency_ms``) are real too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from probes.errors import ConfigError
from probes.sim.app import MAX_LATENCY_MS, MAX_STARTUP_S, MAX_TOKENS, parse_latency

#: knob -> default; every fault is off by default, so ``healthy`` is the plain platform.
DEFAULT_KNOBS: dict[str, Any] = {
    "ready_timeout": None,  # platform s: candidate not ready by then -> replacement errored
    "shift_seconds": 0.0,  # platform s: weighted shift length (0 = atomic switch)
    "pin_connections": False,  # a client connection stays on the proton it first reached
    "drain_s": 30.0,  # platform s: longest drain of the old proton (pinned connections open)
    "drop_inflight": False,  # in-flight requests on the old proton are cut at the switch
    "gap_ms": 0.0,  # real ms: no proton routed right after the switch (503)
    "completed_ttl": 1.0,  # real s: completed record visible, then 404 / replacement null
    "upstream_timeout": 30.0,  # real s: gateway -> proton timeout (504)
    "dwell": 0.6,  # real s: min time in submitted/staged/promoting/canceling (> a 0.5 s poll)
    "replicas": 1,  # replicas of the pre-created workload's proton
    "baseline_latency_ms": "0",
    "candidate_latency_ms": "0",
    "baseline_error_rate": 0.0,
    "candidate_error_rate": 0.0,
    "candidate_startup_s": 0.0,  # platform s before the candidate's /health answers 200
    "candidate_never_ready": False,
    "reveal_version": "both",  # header, body, both, none (both artifacts)
    # Streamed chat answers (POST /v1/chat/completions with "stream": true): real ms.
    "baseline_first_token_ms": "0",  # delay of the first content chunk
    "candidate_first_token_ms": "0",
    "baseline_inter_token_ms": "0",  # delay of each next content chunk
    "candidate_inter_token_ms": "0",
    "stream_tokens": 16,  # content chunks per answer (both artifacts)
    "baseline_abort_share": 0.0,  # share of streams cut half-way (no finish_reason, no [DONE])
    "candidate_abort_share": 0.0,
}

#: the most replicas one proton may have (the control plane answers 403 beyond)
MAX_REPLICAS = 8
PLATFORM_S_MAX = MAX_STARTUP_S  # platform seconds (about 115 days): any real rollout fits


@dataclass(frozen=True)
class Range:
    """The valid values of one numeric knob: finite, ``low..high`` (``low`` itself excluded
    when ``open_low``), integral when ``integer``; ``unit`` says what the number counts."""

    low: float
    high: float
    unit: str
    open_low: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        low, high = _show(self.low), _show(self.high)
        bounds = f"> {low} and <= {high}" if self.open_low else f"in {low}..{high}"
        return f"{kind} {bounds}" + (f" ({self.unit})" if self.unit else "")

    def check(self, flag: str, value: Any) -> None:
        """ConfigError naming ``flag`` unless ``value`` is in range (one line, no traceback)."""
        number = _number(value, self.integer)
        ok = (
            number is not None
            and math.isfinite(number)
            and (number > self.low if self.open_low else number >= self.low)
            and number <= self.high
        )
        if not ok:
            raise ConfigError(f"{flag} {value!r}: expected {self.describe()}")


def _number(value: Any, integer: bool) -> float | None:
    """``value`` as a number to compare (an int stays an int: exact), None if it is none."""
    if isinstance(value, bool):
        return None
    if integer:
        return value if isinstance(value, int) else None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


#: every numeric setting of ``SimConfig`` (and so of ``probes sim``) with its valid range
RANGES: dict[str, Range] = {
    "time_scale": Range(0.0, 100_000.0, "platform seconds per real second", open_low=True),
    "port": Range(0, 65535, "", integer=True),
    "seed": Range(0, 2**63 - 1, "", integer=True),
    "ready_timeout": Range(0.0, PLATFORM_S_MAX, "platform seconds", open_low=True),
    "shift_seconds": Range(0.0, PLATFORM_S_MAX, "platform seconds"),
    "drain_s": Range(0.0, PLATFORM_S_MAX, "platform seconds"),
    "gap_ms": Range(0.0, 600_000.0, "real milliseconds"),
    "completed_ttl": Range(0.0, 3600.0, "real seconds"),
    "upstream_timeout": Range(0.0, 3600.0, "real seconds", open_low=True),
    "dwell": Range(0.0, 60.0, "real seconds"),
    "replicas": Range(1, MAX_REPLICAS, "replicas", integer=True),
    "baseline_error_rate": Range(0.0, 1.0, "share of responses"),
    "candidate_error_rate": Range(0.0, 1.0, "share of responses"),
    "candidate_startup_s": Range(0.0, PLATFORM_S_MAX, "platform seconds"),
    "stream_tokens": Range(1, MAX_TOKENS, "content chunks per streamed answer", integer=True),
    "baseline_abort_share": Range(0.0, 1.0, "share of streams"),
    "candidate_abort_share": Range(0.0, 1.0, "share of streams"),
}
#: latency knobs: text forms (``parse_latency``), every number in 0..MAX_LATENCY_MS
LATENCY_KNOBS = (
    "baseline_latency_ms",
    "candidate_latency_ms",
    "baseline_first_token_ms",
    "candidate_first_token_ms",
    "baseline_inter_token_ms",
    "candidate_inter_token_ms",
)


def flag(name: str) -> str:
    """The ``probes sim`` flag of a setting (``gap_ms`` -> ``--gap-ms``)."""
    return "--" + name.replace("_", "-")


SCENARIOS: dict[str, dict[str, Any]] = {
    "healthy": {},
    "bad-candidate": {"candidate_error_rate": 0.2},
    "slow-candidate": {"candidate_latency_ms": "40-80", "baseline_latency_ms": "2-5"},
    "never-ready": {"candidate_never_ready": True, "ready_timeout": 120.0},
    "drop-inflight": {"drop_inflight": True, "baseline_latency_ms": "100-200"},
    "gap": {"gap_ms": 500.0},
    # 180 platform s of drain = 3 s real at --time-scale 60: a clearly visible mixed window
    "sticky": {"pin_connections": True, "drain_s": 180.0},
    "gradual": {"shift_seconds": 120.0},
    "hidden-version": {"reveal_version": "none"},
    # The candidate's first token comes ~150 ms later while its answer ends as soon: 20 + 15 x
    # 15 = 245 ms against 170 + 15 x 5 = 245 ms (16 tokens). Only TTFT tells them apart.
    "slow-first-token": {
        "baseline_first_token_ms": "18-22",
        "baseline_inter_token_ms": "14-16",
        "candidate_first_token_ms": "165-175",
        "candidate_inter_token_ms": "4-6",
    },
    "cut-streams": {
        "baseline_first_token_ms": "20",
        "candidate_first_token_ms": "20",
        "baseline_inter_token_ms": "5",
        "candidate_inter_token_ms": "5",
        "candidate_abort_share": 0.3,
    },
}

SCENARIO_HELP = {
    "healthy": "a plain healthy platform, every fault off",
    "bad-candidate": "the candidate answers 20% of requests with a 500",
    "slow-candidate": "the candidate takes 40-80 ms per request, the baseline 2-5 ms",
    "never-ready": "the candidate's readiness probe never passes; errored after 120 s platform",
    "drop-inflight": (
        "in-flight requests on the old proton are cut at the switch (100-200 ms baseline)"
    ),
    "gap": "no proton is routed for 500 ms after the switch (503)",
    "sticky": (
        "a client connection stays on the proton it first reached until it closes; the old "
        "proton drains 180 s platform (or until its connections close), is kept, then stopped"
    ),
    "gradual": "the candidate's share rises linearly over 120 s platform time after the switch",
    "hidden-version": "the app reveals no version (neither header nor body)",
    "slow-first-token": (
        "streamed chat answers: the candidate's first token comes ~150 ms later (170 ms "
        "against 20), its answer ends as soon (245 ms, 16 tokens)"
    ),
    "cut-streams": "streamed chat answers: the candidate cuts 30% of its streams half-way",
}


@dataclass(frozen=True)
class SimConfig:
    """Everything a :class:`~probes.sim.Simulator` needs; knobs left ``None`` take the
    scenario's value, then the default (``DEFAULT_KNOBS``)."""

    scenario: str = "healthy"
    time_scale: float = 1.0
    token: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    seed: int | None = None
    ready_timeout: float | None = None
    shift_seconds: float | None = None
    pin_connections: bool | None = None
    drain_s: float | None = None
    drop_inflight: bool | None = None
    gap_ms: float | None = None
    completed_ttl: float | None = None
    upstream_timeout: float | None = None
    dwell: float | None = None
    replicas: int | None = None
    baseline_latency_ms: str | None = None
    candidate_latency_ms: str | None = None
    baseline_error_rate: float | None = None
    candidate_error_rate: float | None = None
    candidate_startup_s: float | None = None
    candidate_never_ready: bool | None = None
    reveal_version: str | None = None
    baseline_first_token_ms: str | None = None
    candidate_first_token_ms: str | None = None
    baseline_inter_token_ms: str | None = None
    candidate_inter_token_ms: str | None = None
    stream_tokens: int | None = None
    baseline_abort_share: float | None = None
    candidate_abort_share: float | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(
                f"--scenario {self.scenario!r}: expected one of {', '.join(SCENARIOS)}"
            )
        RANGES["time_scale"].check(flag("time_scale"), self.time_scale)
        RANGES["port"].check(flag("port"), self.port)
        if self.seed is not None:
            RANGES["seed"].check(flag("seed"), self.seed)
        if not self.token:
            raise ConfigError("simulator token: expected a non-empty bearer token")
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"--host {self.host!r}: the simulator binds loopback only")
        knobs = self.knobs()
        if knobs["reveal_version"] not in ("header", "body", "both", "none"):
            raise ConfigError(
                f"--reveal-version {knobs['reveal_version']!r}: expected header, body, both or none"
            )
        for name, valid in RANGES.items():
            if name in knobs and knobs[name] is not None:
                valid.check(flag(name), knobs[name])
        for name in LATENCY_KNOBS:
            check_latency(flag(name), knobs[name])

    def knobs(self) -> dict[str, Any]:
        """Defaults, overlaid by the scenario, overlaid by every knob set explicitly."""
        out = dict(DEFAULT_KNOBS)
        out.update(SCENARIOS[self.scenario])
        explicit = {f.name: getattr(self, f.name) for f in fields(self) if f.name in out}
        out.update({k: v for k, v in explicit.items() if v is not None})
        return out

    def describe(self) -> dict[str, Any]:
        """The effective configuration, token masked (for logs and manifests)."""
        data = asdict(self)
        data["token"] = "***"
        data["knobs"] = self.knobs()
        return data


def check_latency(flag_name: str, value: Any) -> None:
    """ConfigError naming the flag unless ``value`` is a latency the proton app accepts."""
    try:
        if not str(value).strip():
            raise ValueError("empty")
        parse_latency(str(value))
    except ValueError:
        raise ConfigError(
            f"{flag_name} {value!r}: expected MS, LOW-HIGH or lognorm:MEDIAN:SIGMA, every "
            f"number finite, milliseconds in 0..{_show(MAX_LATENCY_MS)} "
            "(e.g. 5, 5-20, lognorm:10:0.5)"
        ) from None
