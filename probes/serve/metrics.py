"""The service's Prometheus metrics (CONTRACT.md "Metrics"), on a registry of its own.

A continuous prober exports counters and a duration histogram (as Grafana Synthetic
Monitoring does), not per-scrape gauges: Prometheus computes rates and quantiles over any
window from them, and nothing is lost between scrapes.

=============================================================  ==========================
metric (prefix ``proton_probe_``, base units)                   labels
=============================================================  ==========================
``requests_total`` (counter)                                    target, version, source, outcome
``request_duration_seconds`` (histogram)                        target, version
``ttft_seconds`` (histogram: streamed answers' time to first token) target, version
``observed_version_share_ratio`` (gauge, last window, 0-1)      target, version
``last_success_timestamp_seconds`` (gauge)                      target
``rollout_in_progress`` (gauge, 0/1)                            target
``rollouts_total`` (counter)                                    target, outcome
``verdict`` (gauge, one-hot over pass, fail, pending)           target, verdict
``verdict_decision`` (gauge, one-hot: the sequential decision)  target, decision
``verdict_guardrail_bound`` (gauge, the guardrail's unit)       target, metric, bound
``scheduled_runs_total`` (counter)                              schedule, result
``scheduled_runs_missed_total`` (counter)                       schedule
``build_info`` (gauge, 1)                                       version
=============================================================  ==========================

Version labels are bounded: ``keep_versions`` removes every series of a target's versions that
are no longer kept (the service keeps its open rollout's and its last 5 rollouts' versions).
Between two such calls a target never exports more than ``MAX_VERSIONS_PER_TARGET`` versions:
further ones are counted under ``version="other"``, so a tag rule that matches something
unbounded (a request id, a host name) cannot blow up the scrape.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "BOUNDS",
    "DURATION_BUCKETS_S",
    "EXPOSED",
    "MAX_VERSIONS_PER_TARGET",
    "OTHER_VERSION",
    "TTFT_BUCKETS_S",
    "VERDICTS",
    "Metrics",
]

PREFIX = "proton_probe_"
#: Every metric as scraped (CONTRACT.md "Metrics"), prefix aside; counters gain ``_total``.
EXPOSED = (
    "requests_total",
    "request_duration_seconds",
    "ttft_seconds",
    "observed_version_share_ratio",
    "last_success_timestamp_seconds",
    "rollout_in_progress",
    "rollouts_total",
    "verdict",
    "verdict_decision",
    "verdict_guardrail_bound",
    "scheduled_runs_total",
    "scheduled_runs_missed_total",
    "recording_ok",
    "recording_errors_total",
    "recording_rows_dropped_total",
    "build_info",
)
#: Request duration buckets (seconds): model endpoints answer in milliseconds to a minute.
DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Time-to-first-token buckets (seconds): an LLM's first token, tens of ms to tens of seconds.
TTFT_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
VERDICTS = ("pass", "fail", "pending")
#: The values exported per guardrail (``verdict_guardrail_bound``'s ``bound`` label).
BOUNDS = ("lower", "upper", "estimate", "margin")
#: A latency guardrail's too: its floor and the difference's bounds (ms).
BOUNDS_MS = ("margin_ms", "delta_lower_ms", "delta_upper_ms")
MAX_VERSIONS_PER_TARGET = 20
OTHER_VERSION = "other"


class Metrics:
    """Every metric of the contract; the methods are safe to call from any thread."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        # prometheus_client adds ``_total`` to a Counter's name: EXPOSED lists the names as
        # scraped (CONTRACT.md), and tests/serve/test_metrics.py checks each is exposed.
        self._requests = Counter(
            PREFIX + "requests",
            "Requests sent to a target, by the version that answered and the outcome "
            "(ok, or the error class).",
            ["target", "version", "source", "outcome"],
            registry=reg,
        )
        self._duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from sending a request to its full response (or failure).",
            ["target", "version"],
            buckets=DURATION_BUCKETS_S,
            registry=reg,
        )
        self._ttft = Histogram(
            PREFIX + "ttft_seconds",
            "Time from sending a request to the first content event of its streamed answer "
            "(text/event-stream; answers that are not streams are not observed).",
            ["target", "version"],
            buckets=TTFT_BUCKETS_S,
            registry=reg,
        )
        self._share = Gauge(
            PREFIX + "observed_version_share_ratio",
            "Share of a target's requests each version answered over the last window.",
            ["target", "version"],
            registry=reg,
        )
        self._last_success = Gauge(
            PREFIX + "last_success_timestamp_seconds",
            "Unix time of the last successful response from a target.",
            ["target"],
            registry=reg,
        )
        self._rollout = Gauge(
            PREFIX + "rollout_in_progress",
            "1 while a rollout capture is open on the target, else 0.",
            ["target"],
            registry=reg,
        )
        self._rollouts = Counter(
            PREFIX + "rollouts",
            "Rollout captures closed, by the rollout's outcome.",
            ["target", "outcome"],
            registry=reg,
        )
        self._verdict = Gauge(
            PREFIX + "verdict",
            "The target's current verdict, one-hot over pass, fail and pending.",
            ["target", "verdict"],
            registry=reg,
        )
        self._decision = Gauge(
            PREFIX + "verdict_decision",
            "The sequential comparison's decision for the target's rollout, one-hot over "
            "pass, fail and pending (the first decision reached; it never changes).",
            ["target", "decision"],
            registry=reg,
        )
        self._bound = Gauge(
            PREFIX + "verdict_guardrail_bound",
            "Each guardrail of the sequential comparison: its confidence sequence's lower and "
            "upper bound, its estimate and its margin (a ratio, or a difference of error "
            "rates); a latency guardrail also its margin's floor (margin_ms) and the "
            "difference's bounds (delta_lower_ms, delta_upper_ms), ms; +Inf (-Inf) where a "
            "bound is still open, NaN where nothing is estimated yet.",
            ["target", "metric", "bound"],
            registry=reg,
        )
        #: The gauge's value per target, read back without a pass over its samples.
        self._verdicts: dict[str, str] = {}
        self._scheduled = Counter(
            PREFIX + "scheduled_runs",
            "Scheduled runs started, by result.",
            ["schedule", "result"],
            registry=reg,
        )
        self._missed = Counter(
            PREFIX + "scheduled_runs_missed",
            "Scheduled fire times that did not run (deadline passed, forbid, deferred).",
            ["schedule"],
            registry=reg,
        )
        self._recording_ok = Gauge(
            PREFIX + "recording_ok",
            "1 while every run of the target is being written, 0 while its recording is"
            " stopped (a full or broken disk; retried).",
            ["target"],
            registry=reg,
        )
        self._recording_errors = Counter(
            PREFIX + "recording_errors",
            "Failed attempts to write a target's runs (segment roll, flush, close, capture).",
            ["target"],
            registry=reg,
        )
        self._rows_dropped = Counter(
            PREFIX + "recording_rows_dropped",
            "Samples lost because the disk refused them and memory could hold no more.",
            ["target"],
            registry=reg,
        )
        self._build = Gauge(
            PREFIX + "build_info", "The running proton-probe version.", ["version"], registry=reg
        )
        self._build.labels(version=version).set(1)
        self._lock = threading.Lock()
        #: target -> version -> the (source, outcome) pairs exported for it
        self._series: dict[str, dict[str, set[tuple[str, str]]]] = {}
        #: target -> the guardrails whose bounds it exports
        self._guardrails: dict[str, set[str]] = {}

    def _version_label(self, target: str, version: str) -> str:
        """``version``, or ``other`` once the target already exports the maximum (lock held)."""
        versions = self._series.setdefault(target, {})
        if version in versions or len(versions) < MAX_VERSIONS_PER_TARGET:
            return version
        return OTHER_VERSION

    def request(
        self,
        target: str,
        version: str,
        source: str,
        outcome: str,
        seconds: float,
        ttft_s: float | None = None,
    ) -> None:
        """One request: ``requests_total`` and (``outcome == "ok"`` or not) its duration;
        ``ttft_s``: a streamed answer's time to first token (``ttft_seconds``)."""
        with self._lock:
            label = self._version_label(target, version)
            self._series[target].setdefault(label, set()).add((source, outcome))
            # under the lock: keep_versions must never miss a series created meanwhile
            self._requests.labels(target, label, source, outcome).inc()
            self._duration.labels(target, label).observe(max(0.0, seconds))
            if ttft_s is not None:
                self._ttft.labels(target, label).observe(max(0.0, ttft_s))

    def shares(self, target: str, shares: Mapping[str, float]) -> None:
        """The versions' shares over the last window; a kept version absent from it is 0."""
        with self._lock:
            versions = self._series.setdefault(target, {})
            for version in list(versions):
                if version not in shares:
                    self._share.labels(target, version).set(0.0)
            for version, share in shares.items():
                label = self._version_label(target, version)
                versions.setdefault(label, set())
                self._share.labels(target, label).set(float(share))

    def last_success(self, target: str, ts: float) -> None:
        self._last_success.labels(target).set(ts)

    def rollout(self, target: str, in_progress: bool) -> None:
        self._rollout.labels(target).set(1 if in_progress else 0)

    def rollout_done(self, target: str, outcome: str) -> None:
        """A rollout capture closed with this outcome (completed, errored, canceled, ...)."""
        self._rollouts.labels(target, outcome).inc()

    def verdict(self, target: str, verdict: str, body: Mapping[str, Any] | None = None) -> None:
        """Set the one-hot verdict gauge (``pass``, ``fail`` or ``pending``) and, from the
        verdict endpoint's ``body``, the decision and every guardrail's bounds."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        for v in VERDICTS:
            self._verdict.labels(target, v).set(1 if v == verdict else 0)
        self._verdicts[target] = verdict
        if body is not None:
            self.guardrails(target, body.get("decision"), body.get("guardrails") or [])

    def guardrails(
        self, target: str, decision: str | None, guardrails: Iterable[Mapping[str, Any]]
    ) -> None:
        """The sequential decision (one-hot; none set without one) and each guardrail's
        ``lower``, ``upper``, ``estimate`` and ``margin``; guardrails gone are removed."""
        for d in VERDICTS:
            self._decision.labels(target, d).set(1 if d == decision else 0)
        with self._lock:
            shown = {str(g.get("metric")): g for g in guardrails}
            old = self._guardrails.setdefault(target, set())
            for metric in old - set(shown):
                for bound in (*BOUNDS, *BOUNDS_MS):
                    _remove(self._bound, target, metric, bound)
            for metric, g in shown.items():
                for bound in (*BOUNDS, *BOUNDS_MS):
                    if bound in BOUNDS_MS and bound not in g:
                        continue  # the error guardrail has no floor
                    value = g.get(bound)
                    if value is None:  # an open bound is +-Inf; no estimate is NaN
                        value = {"upper": math.inf, "delta_upper_ms": math.inf,
                                 "delta_lower_ms": -math.inf}.get(bound, math.nan)  # fmt: skip
                    self._bound.labels(target, metric, bound).set(float(value))
            self._guardrails[target] = set(shown)

    def verdicts(self) -> dict[str, str]:
        """target -> its one-hot ``verdict`` gauge's value (targets never set are absent)."""
        return dict(self._verdicts)

    def verdict_of(self, target: str) -> str | None:
        """The target's ``verdict`` gauge's value (None: never set)."""
        return self._verdicts.get(target)

    def recording(self, target: str, ok: bool) -> None:
        """Whether the target's recording works (1) or is stopped (0)."""
        self._recording_ok.labels(target).set(1 if ok else 0)

    def recording_error(self, target: str) -> None:
        """One failed attempt to write the target's runs."""
        self._recording_errors.labels(target).inc()

    def rows_dropped(self, target: str, rows: int) -> None:
        """``rows`` samples of the target lost (the disk refused them, memory was full)."""
        if rows > 0:
            self._rows_dropped.labels(target).inc(rows)

    def scheduled_run(self, schedule: str, result: str) -> None:
        self._scheduled.labels(schedule, result).inc()

    def missed(self, schedule: str) -> None:
        self._missed.labels(schedule).inc()

    def keep_versions(self, target: str, versions: Iterable[str]) -> None:
        """Remove every series of ``target`` whose version is not in ``versions``."""
        keep = set(versions)
        with self._lock:
            exported = self._series.get(target, {})
            for version in [v for v in exported if v not in keep]:
                for source, outcome in exported.pop(version):
                    _remove(self._requests, target, version, source, outcome)
                _remove(self._duration, target, version)
                _remove(self._ttft, target, version)
                _remove(self._share, target, version)


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # that combination was never exported
        metric.remove(*labels)
