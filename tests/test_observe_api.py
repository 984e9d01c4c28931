"""`probes observe --api … --workload … --replace-with …` against the real simulator, through
its real invoke gateway: one rollout per scenario, asserted on summary numbers, event rows
and the simulator's own per-proton counts.

Time runs 60x in the simulator (a 120 s platform shift takes 2 s); each observation ends by
itself once the replacement is over plus ``--tail``; ``--duration`` is only the hard cap.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.cli import main
from probes.errors import TargetError
from probes.records import read_events, read_manifest, read_samples
from probes.sim import SimConfig, Simulator
from probes.workload import RejectedError, WorkloadClient
from reports.timeline import attribute, switch_windows

pytestmark = pytest.mark.slow

TOKEN = "test-token"
TOKEN_ENV = "PROBES_TEST_SIM_TOKEN"
SCALE = 60.0
RATE = 50


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@dataclass
class Observed:
    code: int
    run_dir: Path
    summary: dict[str, Any]
    events: list[dict[str, Any]]
    sim_counts: dict[str, int]  # proton id -> requests the gateway routed to it
    sim_server_errors: dict[str, int]  # proton id -> its stats endpoint's serverErrors
    labels: dict[str, str]  # artifact id -> label
    baseline: str
    candidate: str

    @property
    def rollout(self) -> dict[str, Any]:
        return self.summary["rollout"]

    def version(self, label: str) -> dict[str, Any]:
        return self.summary["versions"][label]

    def counts_by_label(self, counts: dict[str, int] | None = None) -> dict[str, int]:
        """The simulator's per-proton counts (``sim_counts`` unless given), keyed by the
        label the watcher recorded."""
        label_of = {
            e["proton_id"]: e["detail"]["version"] for e in self.events if e["kind"] == "proton"
        }
        out: dict[str, int] = {}
        for pid, n in (self.sim_counts if counts is None else counts).items():
            out[label_of[pid]] = out.get(label_of[pid], 0) + n
        return out


def server_errors(sim: Simulator, proton_ids: list[str]) -> dict[str, int]:
    """Per proton, the 5xx (and cut) answers the platform's stats endpoint counted."""
    out = {}
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        for pid in proton_ids:
            r = c.get(f"{sim.api_url}/workloads/{sim.workload_id}/stats", params={"protonId": pid})
            assert r.status_code == 200, r.text
            out[pid] = r.json()["metrics"]["serverErrors"]
    return out


def observe(
    tmp_path: Path,
    scenario: str,
    *flags: str,
    rate: int = RATE,
    duration: float = 12.0,
    replace: bool = True,
    **knobs: Any,
) -> Observed:
    config = SimConfig(scenario=scenario, time_scale=SCALE, token=TOKEN, port=0, seed=7, **knobs)
    with Simulator(config) as sim:
        argv = ["observe", "--api", sim.api_url, "--workload", sim.workload_id]
        if replace:
            argv += ["--replace-with", sim.candidate_artifact_id]
        argv += ["--token-env", TOKEN_ENV, "--rate", str(rate), "--duration", str(duration)]
        argv += ["--tail", "1.5", "--runs-dir", str(tmp_path), "--run-id", scenario, "-q", *flags]
        code = main(argv)
        counts = sim.proton_request_counts()
        errors = server_errors(sim, list(counts))
        labels = dict(sim.labels)
        baseline, candidate = labels[sim.baseline_artifact_id], labels[sim.candidate_artifact_id]
    run_dir = tmp_path / scenario
    summary = json.loads((run_dir / "summary.json").read_text())
    return Observed(
        code, run_dir, summary, read_events(run_dir), counts, errors, labels, baseline, candidate
    )


def test_healthy_zero_errors_switch_seen_at_switched_at_counts_agree(tmp_path):
    obs = observe(tmp_path, "healthy")
    ro = obs.rollout
    assert obs.code == 0 and obs.summary["errors"] == 0
    assert (ro["from_version"], ro["to_version"], ro["outcome"]) == (
        obs.baseline,
        obs.candidate,
        "completed",
    )
    assert 0 < ro["requested_at_s"] < ro["platform"]["switched_at_s"]
    # The first candidate answer is the first request *due* after switchedAt (or one due
    # before it but sent after it): sent at or after the switch, due at most one probe
    # interval after it. switchedAt has millisecond precision.
    frame = read_samples(obs.run_dir)
    t0 = read_manifest(obs.run_dir)["started_ts"]
    sw = t0 + ro["platform"]["switched_at_s"]
    first = frame[frame["version"] == obs.candidate].iloc[0]
    assert first["ts"] >= sw - 0.002
    assert first["intended_ts"] <= sw + 1.0 / RATE + 0.002
    # Per-version requests agree with the simulator's per-proton stats (±1%).
    by_label = obs.counts_by_label()
    for label in (obs.baseline, obs.candidate):
        assert abs(obs.version(label)["requests"] - by_label[label]) <= max(
            1, 0.01 * by_label[label]
        )
    # Roles come from the protons; the manifest names the platform, token-free.
    manifest = read_manifest(obs.run_dir)
    assert manifest["platform"]["workload_id"] and manifest["platform"]["outcome"] == "completed"
    assert manifest["platform"]["labels"] == obs.labels
    assert TOKEN not in (obs.run_dir / "manifest.json").read_text()
    assert TOKEN not in (obs.run_dir / "events.jsonl").read_text()
    assert obs.version(obs.baseline)["role"] == "baseline"


def test_bad_candidate_error_rate_near_configured(tmp_path):
    obs = observe(tmp_path, "bad-candidate", rate=100)
    cand = obs.version(obs.candidate)
    assert cand["requests"] > 150
    # Exact: every 500 the platform counted for the candidate proton is one error row of the
    # candidate in the report, and the baseline's none; requests agree within ±1%.
    errors_by_label = obs.counts_by_label(obs.sim_server_errors)
    assert cand["errors"] == errors_by_label[obs.candidate] > 0
    assert obs.version(obs.baseline)["errors"] == errors_by_label[obs.baseline] == 0
    by_label = obs.counts_by_label()
    assert abs(cand["requests"] - by_label[obs.candidate]) <= max(1, 0.01 * by_label[obs.candidate])
    assert cand["error_rate"] == pytest.approx(cand["errors"] / cand["requests"])
    # Sanity only (the seeded app draws the errors): configured 0.2, ±3 sd at n ≈ 200.
    assert 0.1 <= cand["error_rate"] <= 0.3
    assert obs.summary["comparison"]["judgement"] == "worse" and obs.code == 1


def test_never_ready_errored_and_traffic_stays_on_baseline(tmp_path):
    obs = observe(tmp_path, "never-ready")
    assert obs.rollout["outcome"] == "errored"
    assert set(obs.summary["versions"]) == {obs.baseline}
    assert obs.summary["errors"] == 0
    by_label = obs.counts_by_label()
    assert by_label[obs.candidate] == 0
    errored = [e for e in obs.events if e["kind"] == "replacement" and e["status"] == "errored"]
    assert len(errored) == 1 and "ready" in errored[0]["detail"]["message"]
    # It ended by itself (errored + tail), well before the --duration cap.
    assert obs.summary["duration_s"] < 11.5


def test_drop_inflight_errors_during_switch(tmp_path):
    # GET on purpose: aiohttp would silently re-send an idempotent request cut on a reused
    # connection; the probe turns that off, so the cut requests are rows.
    obs = observe(tmp_path, "drop-inflight")
    assert obs.rollout["outcome"] == "completed"
    assert obs.rollout["errors_during_switch"] > 0
    assert obs.summary["error_classes"].get("reset", 0) == obs.summary["errors"] > 0
    assert obs.version(obs.baseline)["requests"] > 0 and obs.version(obs.candidate)["requests"] > 0
    # every cut request was counted by the platform as a server error of the old proton
    assert obs.counts_by_label()[obs.baseline] >= obs.version(obs.baseline)["requests"]


def test_gap_longest_gap_at_least_the_gap(tmp_path):
    obs = observe(tmp_path, "gap")
    # No proton is routed for 500 ms: the last success before the gap was sent before it
    # (arriving within its own ~1 ms latency), the first after it was sent after it.
    assert obs.rollout["longest_gap_s"] >= 0.5 - 0.01
    assert obs.rollout["errors_during_switch"] > 0


def test_sticky_mixed_window_and_flips(tmp_path):
    # A slow baseline keeps the probe's pinned keep-alive connections busy: the replacement
    # must still complete (the drain is bounded: 180 s platform = 3 s here), the old proton
    # answering its pinned connections until it is retired.
    obs = observe(tmp_path, "sticky", "--keep-old-minutes", "1", baseline_latency_ms="5-150")
    ro = obs.rollout
    assert ro["outcome"] == "completed" and obs.code in (0, 1)
    switched = ro["platform"]["switched_at_s"]
    assert ro["mixed_window_s"] >= 1.0
    # The signature of stickiness: the baseline still answered long after switchedAt (its
    # pinned connections), for up to the drain bound.
    assert ro["last_baseline_s"] > switched + 1.5
    # Flips are counted: every time this one caller got the baseline again after the
    # candidate. How many there are depends on whether the probe's pool opened connections
    # during the drain (they reach the candidate while older ones stay pinned), which a
    # loaded machine decides; the count itself must be exact.
    frame = read_samples(obs.run_dir)
    seen = frame[frame["version"].isin([obs.baseline, obs.candidate])]
    is_candidate = (seen["version"].astype(str) == obs.candidate).to_numpy()
    flips = int(((~is_candidate[1:]) & is_candidate[:-1]).sum())
    assert ro["flips"] == flips
    by_label = obs.counts_by_label()
    assert obs.version(obs.candidate)["requests"] > 0
    assert abs(obs.version(obs.candidate)["requests"] - by_label[obs.candidate]) <= max(
        1, 0.01 * by_label[obs.candidate]
    )


def test_gradual_half_switch_near_middle_of_shift(tmp_path):
    obs = observe(tmp_path, "gradual")
    ro = obs.rollout
    shift_s = 120.0 / SCALE
    middle = ro["platform"]["switched_at_s"] + shift_s / 2
    assert abs(ro["half_switch_s"] - middle) <= 0.5
    assert ro["mixed_window_s"] >= 1.0 and ro["flips"] > 0


def test_hidden_version_attributed_by_timeline_outside_the_switch(tmp_path):
    obs = observe(tmp_path, "hidden-version")
    raw = read_samples(obs.run_dir)
    assert set(raw["version"].astype(str)) == {"unknown"}  # the app revealed nothing
    out = attribute(raw, obs.events)
    by = out["version"].astype(str)
    tagged = out[out["tag_source"].astype(str) == "timeline"]
    assert set(tagged["version"].astype(str)) == {obs.baseline, obs.candidate}
    windows = switch_windows(obs.events, 0.5)
    assert len(windows) == 1
    start, end = windows[0]
    inside = (tagged["ts"] + tagged["latency_ms"] / 1000 > start) & (tagged["ts"] < end)
    assert not inside.any()
    before = tagged[tagged["ts"] < start]
    after = tagged[tagged["ts"] >= end]
    assert set(before["version"].astype(str)) == {obs.baseline}
    assert set(after["version"].astype(str)) == {obs.candidate}
    # Never more than the simulator routed to each proton; the switch stays unknown.
    sim = obs.counts_by_label()
    assert (by == obs.baseline).sum() <= sim[obs.baseline]
    assert (by == obs.candidate).sum() <= sim[obs.candidate]
    assert (by == "unknown").sum() > 0
    # The report did the same attribution.
    assert obs.version(obs.baseline)["requests"] == (by == obs.baseline).sum()


def test_refused_replacement_keeps_the_run_and_exits_3(tmp_path, capsys):
    config = SimConfig(scenario="healthy", time_scale=SCALE, token=TOKEN, port=0, seed=3)
    with Simulator(config) as sim:
        code = main(
            ["observe", "--api", sim.api_url, "--workload", sim.workload_id,
             "--replace-with", sim.baseline_artifact_id, "--token-env", TOKEN_ENV,
             "--rate", "20", "--duration", "8", "--runs-dir", str(tmp_path), "--run-id", "r", "-q"]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3
    assert "replacement not started" in err and "same artifact" in err
    run_dir = tmp_path / "r"
    assert (run_dir / "report.html").exists() and len(read_samples(run_dir)) > 10
    statuses = [e["status"] for e in read_events(run_dir) if e["kind"] == "marker"]
    assert statuses[:3] == ["watch started", "replacement requested", "replacement refused"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["http://127.0.0.1:1/", "--api", "http://127.0.0.1:1", "--workload", "w"], "exactly one"),
        (["--api", "http://127.0.0.1:1"], "--workload ID"),
        (["--workload", "w"], "--api BASE"),
        (["http://127.0.0.1:1/", "--replace-with", "a"], "--replace-with: only with --api"),
        (["--api", "http://127.0.0.1:1", "--workload", "w", "--warmup-minutes", "-1"],
         "--warmup-minutes"),
        (["--api", "ftp://x", "--workload", "w"], "--api"),
    ],
)  # fmt: skip
def test_flag_errors_exit_2_naming_the_flag(tmp_path, capsys, argv, message):
    code = main(["observe", *argv, "--runs-dir", str(tmp_path), "-q"])
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unauthorized_and_unreachable_api_exit_3(tmp_path, capsys, monkeypatch):
    config = SimConfig(scenario="healthy", time_scale=SCALE, token=TOKEN, port=0, seed=3)
    with Simulator(config) as sim:
        monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
        code = main(
            ["observe", "--api", sim.api_url, "--workload", sim.workload_id,
             "--token-env", "WRONG_TOKEN", "--runs-dir", str(tmp_path), "-q"]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 3 and "unauthorized: check the token in $WRONG_TOKEN" in err
        assert "not-the-token" not in err
        code = main(
            ["observe", "--api", sim.api_url, "--workload", "no-such-wl",
             "--token-env", TOKEN_ENV, "--runs-dir", str(tmp_path), "-q"]
        )  # fmt: skip
        assert code == 3 and "workload 'no-such-wl' not found" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(
        ["observe", "--api", f"http://127.0.0.1:{port}", "--workload", "w",
         "--token-env", TOKEN_ENV, "--runs-dir", str(tmp_path), "-q"]
    )  # fmt: skip
    assert code == 3 and "cannot connect" in capsys.readouterr().err


def test_client_against_the_simulator(tmp_path):
    config = SimConfig(scenario="never-ready", time_scale=SCALE, token=TOKEN, port=0, seed=5)
    with (
        Simulator(config) as sim,
        WorkloadClient(sim.api_url, token_env=TOKEN_ENV, page_size=1) as c,
    ):
        arts = c.list_artifacts()  # two pages of one
        assert {a.id: a.label for a in arts} == sim.labels
        assert [w.id for w in c.list_workloads()] == [sim.workload_id]
        assert c.get_replacement(sim.workload_id) is None
        rep = c.start_replacement(sim.workload_id, sim.candidate_artifact_id, warmup_minutes=1)
        assert rep.status == "submitted" and rep.candidate_artifact_id == sim.candidate_artifact_id
        with pytest.raises(RejectedError) as err:
            c.start_replacement(sim.workload_id, sim.candidate_artifact_id)
        assert err.value.status == 422 and "already in progress" in err.value.detail
        protons = c.list_protons(sim.workload_id)
        assert {p.role for p in protons} <= {"active", "candidate"} and len(protons) >= 1
        assert c.get_proton(sim.workload_id, protons[0].id).id == protons[0].id
        c.cancel_replacement(sim.workload_id)
        with pytest.raises(TargetError, match="artifact 'nope' not found"):
            c.get_artifact("nope")
        stats = c.stats(sim.workload_id, proton_id=protons[0].id)
        assert stats["totalRequests"] == 0


def test_control_plane_failing_mid_run_keeps_the_run_and_exits_3(tmp_path, capsys):
    """A control plane that answers the lookup and then only 503s: the probe's samples and
    the report are kept, the watcher's failures are markers, and the exit code is 3."""
    from tests.test_workload import Server

    srv = Server()
    try:
        wl = {"id": "wl-1", "status": "running", "artifactId": "a1", "protonId": "p1",
              "endpoint": f"{srv.url}/invoke/"}  # fmt: skip
        srv.routes[("GET", "/api/v2/workloads/wl-1")] = [(200, wl), (503, {"detail": "down"})]
        srv.routes[("GET", "/api/v2/workloads/wl-1/protons")] = [
            (200, {"data": [{"id": "p1", "artifactId": "a1", "role": "active"}], "next": None}),
            (503, {"detail": "down"}),
        ]
        srv.routes[("GET", "/api/v2/artifacts/a1")] = [
            (200, {"id": "a1", "name": "app", "version": 1})
        ]
        srv.routes[("GET", "/invoke/")] = [(200, {"version": "app:1"})]
        code = main(
            ["observe", "--api", srv.url, "--workload", "wl-1", "--token-env", TOKEN_ENV,
             "--rate", "20", "--duration", "3", "--runs-dir", str(tmp_path), "--run-id", "r", "-q"]
        )  # fmt: skip
    finally:
        srv.close()
    err = capsys.readouterr().err
    assert code == 3 and "could not be read during the run" in err and "503" in err
    run_dir = tmp_path / "r"
    assert (run_dir / "report.html").exists()
    frame = read_samples(run_dir)
    assert len(frame) >= 50 and set(frame["version"].astype(str)) == {"app:1"}
    markers = [e["status"] for e in read_events(run_dir) if e["kind"] == "marker"]
    assert markers == ["watch started", "watch error", "watch stopped"]
