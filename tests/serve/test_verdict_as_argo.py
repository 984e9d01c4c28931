"""The verdict read as Argo Rollouts reads it, through the service on the simulator.

``deploy/serve/argo-analysistemplate.yaml`` polls ``GET /api/v1/verdict?target=…&candidate=…``
and reads ``$.verdict``: ``failureLimit: 0`` (the first ``fail`` fails the analysis) and
``consecutiveSuccessLimit: 2`` (two ``pass`` in a row end it early). Here the same rules poll a
real ``probes serve`` (continuous canary at 20 req/s, rollout capture at 50 req/s) while the
simulated platform replaces the workload and keeps the old proton for a rollback window
(``keepOldVersionMinutes`` 120 at 60x: two minutes of real time after the switch). Both
decisions must come while that window is open, i.e. while a rollback is still cheap:
``bad-candidate`` (20 % of answers 500) fails, ``healthy`` passes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from probes.sim import SimConfig, Simulator
from probes.sim.state import IN_PROGRESS
from probes.workload import WorkloadClient
from tests.serve.test_service_e2e import TOKEN, TOKEN_ENV, Running, sim_config, wait_for

pytestmark = pytest.mark.slow

#: The rollback window, platform minutes (at time scale 60: real seconds).
KEEP_OLD_MINUTES = 120
#: Argo's interval, scaled down as the platform is (the shipped template polls every 30 s).
POLL_S = 2.0


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def analysis(url: str, candidate: str, client: WorkloadClient, workload: str) -> dict[str, Any]:
    """Poll as the AnalysisTemplate does until it ends (or the rollout does): the outcome,
    every value read, the last body, and the platform's replacement status at the end."""
    seen: list[str] = []
    passes = 0
    while True:
        r = httpx.get(f"{url}/api/v1/verdict", params={"target": "wl", "candidate": candidate},
                      timeout=5)  # fmt: skip
        assert r.status_code == 200, r.text  # a non-2xx is an Error measurement for Argo
        body = r.json()
        seen.append(body["verdict"])
        passes = passes + 1 if body["verdict"] == "pass" else 0
        replacement = client.get_replacement(workload)
        status = replacement.status if replacement is not None else "none"
        outcome = "Failed" if body["verdict"] == "fail" else "Successful" if passes >= 2 else None
        if outcome is not None or status not in IN_PROGRESS:
            return {"outcome": outcome, "seen": seen, "body": body, "status": status}
        time.sleep(POLL_S)


@pytest.mark.parametrize(
    ("scenario", "outcome"), [("healthy", "Successful"), ("bad-candidate", "Failed")]
)
def test_the_verdict_decides_while_the_rollback_window_is_open(
    tmp_path: Path, scenario: str, outcome: str
) -> None:
    config = SimConfig(scenario=scenario, time_scale=60.0, token=TOKEN, port=0, seed=5)
    with Simulator(config) as sim, Running(sim_config(tmp_path, sim)) as svc:
        labels = dict(sim.labels)
        candidate = labels[sim.candidate_artifact_id]
        worker = svc.service.workers["wl"]
        # the baseline's evidence: the canary's last rows before the capture (its pre-roll)
        wait_for(lambda: len(worker.preroll) >= 600, 120)
        with WorkloadClient(sim.api_url, token_env=TOKEN_ENV) as client:
            # before the candidate is seen the endpoint says pending, never a stale verdict
            first = httpx.get(f"{svc.url}/api/v1/verdict",
                              params={"target": "wl", "candidate": candidate}).json()  # fmt: skip
            assert first["verdict"] == "pending", first
            client.start_replacement(
                sim.workload_id, sim.candidate_artifact_id, keep_old_minutes=KEEP_OLD_MINUTES
            )
            started = time.monotonic()
            found = analysis(svc.url, candidate, client, sim.workload_id)
            took = time.monotonic() - started
    body = found["body"]
    print(f"{scenario}: {found['outcome']} {took:.1f} s after the replacement started "
          f"(window {KEEP_OLD_MINUTES} s), decided at {body['decided_at']}, "
          f"samples {body['samples_at_decision']}, status {found['status']}")  # fmt: skip
    # decided before the platform finished: the old proton is still kept for a rollback
    assert found["outcome"] == outcome and found["status"] in IN_PROGRESS, (found, took)
    assert body["candidate"] == candidate and body["decision"] == found["seen"][-1]
    if outcome == "Successful":
        assert "fail" not in found["seen"]
        assert {g["state"] for g in body["guardrails"]} == {"within"}, body["guardrails"]
    else:
        errors = next(g for g in body["guardrails"] if g["metric"] == "error_rate_delta")
        assert errors["state"] == "beyond" and "error_rate_delta" in body["reason"], body
    # the decision is the first one reached, with its time and evidence
    assert body["decided_at"] is not None and body["samples_at_decision"]["candidate"] > 0
