"""The service sends its notifications: a url target's rollout, captured, reaches a webhook
(opened, then closed with its verdict), retried when the webhook fails, recorded in the index."""

from __future__ import annotations

from pathlib import Path

from probes.serve.config import parse_config
from tests.helpers import VersionServer
from tests.serve.test_notify import Webhook
from tests.serve.test_service_e2e import Running, wait_for


def test_a_captured_rollout_is_notified_opened_and_closed(tmp_path: Path) -> None:
    hook = Webhook([500, 200])  # the first attempt fails: the notifier retries it
    try:
        with VersionServer() as server:
            data = {
                "serve": {"runs_dir": "runs", "listen": "127.0.0.1:0"},
                "targets": [
                    {"name": "web", "url": server.url, "canary_rate": 20, "capture_rate": 40,
                     "settle_s": 2, "capture_tail_s": 1},
                ],
                "notify": [{"name": "oncall", "url_env": "ONCALL_HOOK",
                            "events": ["rollout_opened", "rollout_closed", "verdict_fail"]}],
            }  # fmt: skip
            cfg = parse_config(data, tmp_path, env={"ONCALL_HOOK": hook.url})
            with Running(cfg) as svc:
                # switch once the canary has seen v1 (not at a fixed time a busy machine may
                # reach before the service has started)
                wait_for(lambda: svc.get("/api/v1/targets/web")["current_version"] == "v1", 60)
                server.switch_now()

                def kinds() -> list[str]:
                    return [b["event"] for b in hook.delivered()]

                wait_for(lambda: "rollout_closed" in kinds(), 60)
                svc.service.index.flush(5.0)
                recorded = svc.service.index.notifications(target="web")
        delivered = hook.delivered()
    finally:
        hook.close()
    events = [b["event"] for b in delivered]
    assert events.index("rollout_opened") < events.index("rollout_closed")
    closed = next(b for b in delivered if b["event"] == "rollout_closed")
    opened = next(b for b in delivered if b["event"] == "rollout_opened")
    assert closed["run_id"] == opened["run_id"] and closed["target"] == "web"
    assert closed["details"]["verdict"] in ("pass", "pending", "fail") and closed["text"]
    assert hook.answers[0] == 500  # and the retry went through
    assert {(n.kind, n.status) for n in recorded} >= {
        ("rollout_opened", "sent"),
        ("rollout_closed", "sent"),
    }
    assert all(hook.url not in (n.detail or "") for n in recorded)  # the URL is a secret


def test_a_scheduled_run_is_compared_with_its_schedules_baseline(tmp_path: Path) -> None:
    import json

    with VersionServer() as server:
        data = {
            "serve": {"runs_dir": "runs", "listen": "127.0.0.1:0"},
            "targets": [{"name": "web", "url": server.url, "canary_rate": 2}],
            "schedules": [{"name": "often", "target": "web", "kind": "observe", "every": "2s",
                           "duration_s": 1, "args": {"rate": 20}}],
        }  # fmt: skip
        cfg = parse_config(data, tmp_path, env={})
        runs = cfg.serve.runs_dir
        with Running(cfg):

            def compared() -> list[Path]:
                return sorted(runs.glob("often-*/compare-often-*.json"))

            found = wait_for(compared, 60)
    result = json.loads(found[0].read_text())
    first = sorted(p.name for p in runs.glob("often-*") if p.is_dir())[0]
    # compared with the schedule's first run, from the raw samples of both
    assert found[0].name == f"compare-{first}.json" and found[0].parent.name != first
    assert result["judgement"] in ("same", "better", "worse", "inconclusive")
    assert result["baseline"]["run_id"] == first and result["baseline"]["requests"] == 20
    assert set(result["versions"]) == {"v1"}  # the same server: one label on both sides
