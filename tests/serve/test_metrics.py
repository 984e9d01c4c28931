"""The service's metrics, read back from the text exposition with prometheus_client's parser."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from probes.serve.metrics import EXPOSED, MAX_VERSIONS_PER_TARGET, OTHER_VERSION, Metrics


def scrape(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """family name -> [(sample name, labels, value)], from the exposition text."""
    text = generate_latest(metrics.registry).decode()
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def value(families: dict, sample: str, **labels: str) -> float | None:
    for _name, samples in families.items():
        for name, got, v in samples:
            if name == sample and got == labels:
                return v
    return None


def test_every_contract_metric_with_its_labels() -> None:
    m = Metrics("1.2.3")
    m.request("chat", "v1", "probe", "ok", 0.120)
    m.request("chat", "v1", "probe", "timeout", 10.0)
    m.shares("chat", {"v1": 0.75, "v2": 0.25})
    m.last_success("chat", 1_800_000_000.5)
    m.rollout("chat", True)
    m.rollout_done("chat", "completed")
    m.verdict("chat", "pending")
    m.scheduled_run("nightly", "pass")
    m.missed("nightly")
    f = scrape(m)
    p = "proton_probe_"
    assert value(f, p + "requests_total", target="chat", version="v1", source="probe", outcome="ok")
    assert (
        value(
            f, p + "requests_total", target="chat", version="v1", source="probe", outcome="timeout"
        )
        == 1.0
    )
    assert value(f, p + "request_duration_seconds_count", target="chat", version="v1") == 2.0
    assert value(f, p + "request_duration_seconds_sum", target="chat", version="v1") == 10.12
    assert (
        value(f, p + "request_duration_seconds_bucket", target="chat", version="v1", le="0.25") == 1
    )
    assert (
        value(f, p + "request_duration_seconds_bucket", target="chat", version="v1", le="+Inf") == 2
    )
    assert value(f, p + "observed_version_share_ratio", target="chat", version="v2") == 0.25
    assert value(f, p + "last_success_timestamp_seconds", target="chat") == 1_800_000_000.5
    assert value(f, p + "rollout_in_progress", target="chat") == 1.0
    assert value(f, p + "rollouts_total", target="chat", outcome="completed") == 1.0
    assert value(f, p + "verdict", target="chat", verdict="pending") == 1.0
    assert value(f, p + "verdict", target="chat", verdict="pass") == 0.0
    assert value(f, p + "verdict", target="chat", verdict="fail") == 0.0
    assert value(f, p + "scheduled_runs_total", schedule="nightly", result="pass") == 1.0
    assert value(f, p + "scheduled_runs_missed_total", schedule="nightly") == 1.0
    assert value(f, p + "build_info", version="1.2.3") == 1.0
    types = {
        fam.name: fam.type
        for fam in text_string_to_metric_families(generate_latest(m.registry).decode())
    }
    assert types[p + "requests"] == "counter"
    assert types[p + "request_duration_seconds"] == "histogram"
    assert types[p + "observed_version_share_ratio"] == "gauge"
    assert types[p + "rollouts"] == "counter"
    assert types[p + "scheduled_runs_missed"] == "counter"


def test_verdict_is_one_hot_and_rejects_other_values() -> None:
    m = Metrics("0")
    m.verdict("chat", "fail")
    m.verdict("chat", "pass")
    f = scrape(m)
    got = {lab["verdict"]: v for n, lab, v in f["proton_probe_verdict"] if lab["target"] == "chat"}
    assert got == {"pass": 1.0, "fail": 0.0, "pending": 0.0}
    try:
        m.verdict("chat", "inconclusive")
    except ValueError as exc:
        assert "pending" in str(exc)
    else:
        raise AssertionError("an unknown verdict was accepted")


GUARDRAIL = {"metric": "latency_p50_ratio", "estimate": 1.02, "lower": 0.95, "upper": 1.08,
             "margin": 1.1, "state": "within"}  # fmt: skip


def test_decision_and_guardrail_bounds_from_the_verdict_body() -> None:
    m = Metrics("0")
    p99 = {"metric": "latency_p99_ratio", "estimate": None, "lower": 0.0, "upper": None,
           "margin": 1.25, "state": "open"}  # fmt: skip
    m.verdict("chat", "pending", {"decision": "pending", "guardrails": [GUARDRAIL, p99]})
    f = scrape(m)
    got = {lab["decision"]: v for _, lab, v in f["proton_probe_verdict_decision"]}
    assert got == {"pass": 0.0, "fail": 0.0, "pending": 1.0}
    bounds = {(lab["metric"], lab["bound"]): v for _, lab, v in
              f["proton_probe_verdict_guardrail_bound"]}  # fmt: skip
    assert bounds[("latency_p50_ratio", "lower")] == 0.95
    assert bounds[("latency_p50_ratio", "margin")] == 1.1
    assert bounds[("latency_p99_ratio", "upper")] == float("inf")  # still open
    assert bounds[("latency_p99_ratio", "estimate")] != bounds[("latency_p99_ratio", "estimate")]
    assert len(bounds) == 8
    # a guardrail no longer in the body is no longer exported
    m.verdict("chat", "fail", {"decision": "fail", "guardrails": [GUARDRAIL]})
    f = scrape(m)
    assert {lab["metric"] for _, lab, _ in f["proton_probe_verdict_guardrail_bound"]} == {
        "latency_p50_ratio"
    }
    assert value(f, "proton_probe_verdict_decision", target="chat", decision="fail") == 1.0


def test_shares_zero_a_version_that_left_the_window() -> None:
    m = Metrics("0")
    m.shares("chat", {"v1": 1.0})
    m.shares("chat", {"v2": 1.0})
    f = scrape(m)
    assert value(f, "proton_probe_observed_version_share_ratio", target="chat", version="v1") == 0
    assert value(f, "proton_probe_observed_version_share_ratio", target="chat", version="v2") == 1


def versions_of(f: dict, family: str, target: str) -> set[str]:
    return {lab["version"] for _n, lab, _v in f.get(family, []) if lab.get("target") == target}


def test_keep_versions_removes_every_series_of_other_versions() -> None:
    m = Metrics("0")
    for version in ("v1", "v2", "v3"):
        m.request("chat", version, "probe", "ok", 0.01)
        m.request("chat", version, "locust", "http_5xx", 0.02)
        m.shares("chat", {version: 1.0})
    m.request("emb", "v1", "probe", "ok", 0.01)
    m.keep_versions("chat", ["v2", "v3"])
    f = scrape(m)
    for family in (
        "proton_probe_requests",
        "proton_probe_request_duration_seconds",
        "proton_probe_observed_version_share_ratio",
    ):
        assert versions_of(f, family, "chat") == {"v2", "v3"}, family
    assert versions_of(f, "proton_probe_requests", "emb") == {"v1"}  # other targets untouched
    m.request("chat", "v1", "probe", "ok", 0.01)  # a version can come back (a rollback)
    assert "v1" in versions_of(scrape(m), "proton_probe_requests", "chat")


def test_versions_per_target_are_capped_between_keep_calls() -> None:
    m = Metrics("0")
    for i in range(MAX_VERSIONS_PER_TARGET + 5):
        m.request("chat", f"build-{i}", "probe", "ok", 0.01)
    f = scrape(m)
    got = versions_of(f, "proton_probe_requests", "chat")
    assert len(got) == MAX_VERSIONS_PER_TARGET + 1 and OTHER_VERSION in got
    total = sum(v for n, lab, v in f["proton_probe_requests"] if n.endswith("_total"))
    assert total == MAX_VERSIONS_PER_TARGET + 5  # nothing lost, only folded
    m.keep_versions("chat", ["build-0"])
    m.request("chat", "build-99", "probe", "ok", 0.01)
    assert versions_of(scrape(m), "proton_probe_requests", "chat") == {"build-0", "build-99"}


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics("1"), Metrics("2")
    a.request("chat", "v1", "probe", "ok", 0.01)
    assert versions_of(scrape(b), "proton_probe_requests", "chat") == set()


def test_every_exposed_name_is_scraped() -> None:
    """EXPOSED (the contract's names) is what a scrape shows: a typo on either side fails."""
    m = Metrics("1.2.3")
    m.request("chat", "v1", "probe", "ok", 0.1, 0.05)
    m.shares("chat", {"v1": 1.0})
    m.last_success("chat", 1.0)
    m.rollout("chat", False)
    m.rollout_done("chat", "completed")
    m.verdict("chat", "pass", {"decision": "pass", "guardrails": [GUARDRAIL]})
    m.scheduled_run("nightly", "pass")
    m.missed("nightly")
    m.recording("chat", True)
    m.recording_error("chat")
    m.rows_dropped("chat", 3)
    text = generate_latest(m.registry).decode()
    scraped = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    for name in EXPOSED:
        full = "proton_probe_" + name
        assert full in scraped or f"{full}_bucket" in scraped, full


def test_ttft_histogram_observes_streamed_answers_only_and_goes_with_its_version() -> None:
    m = Metrics("1.2.3")
    m.request("chat", "v1", "probe", "ok", 0.3, 0.04)
    m.request("chat", "v1", "probe", "stream_aborted", 0.2, 0.6)
    m.request("chat", "v1", "probe", "ok", 0.3)  # not a stream: no TTFT
    m.request("chat", "v2", "probe", "ok", 0.3, 0.18)
    fam = scrape(m)
    ttft = "proton_probe_ttft_seconds"
    assert value(fam, ttft + "_count", target="chat", version="v1") == 2
    assert value(fam, ttft + "_sum", target="chat", version="v1") == pytest.approx(0.64)
    assert value(fam, ttft + "_bucket", target="chat", version="v1", le="0.05") == 1
    assert value(fam, ttft + "_bucket", target="chat", version="v1", le="0.75") == 2
    assert value(fam, ttft + "_count", target="chat", version="v2") == 1
    assert value(fam, "proton_probe_request_duration_seconds_count", target="chat",
                 version="v1") == 3  # fmt: skip
    m.keep_versions("chat", ["v2"])
    fam = scrape(m)
    assert value(fam, ttft + "_count", target="chat", version="v1") is None
    assert value(fam, ttft + "_count", target="chat", version="v2") == 1
