"""The shipped manifests (``deploy/``) against what the controllers and the cluster do with them.

Read with PyYAML; a drift from the contract (routes, Flagger hook types) or from the limits the
issue-26 review sized (a restart must not abort a Rollout, Pod Security "restricted", the
service's bounded stop) fails here rather than in a user's cluster.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from reports import parse_slo

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
#: Argo Rollouts retries an Error measurement about every 10 s.
ARGO_ERROR_RETRY_S = 10
#: The service's bounded stop (SIGTERM: close, report and index every open run).
SERVICE_STOP_S = 85


def docs(folder: str, skip: tuple[str, ...] = ("workers.yaml",)) -> dict[str, dict[str, Any]]:
    """The manifests of a folder by kind (the service's own: Locust workers' are apart)."""
    found = {}
    for path in sorted((DEPLOY / folder).glob("*.yaml")):
        if path.name in skip:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def serve() -> dict[str, dict[str, Any]]:
    return docs("serve")


def test_a_restart_of_the_service_does_not_abort_a_rollout(serve):
    metric = serve["AnalysisTemplate"]["spec"]["metrics"][0]
    pod = serve["Deployment"]["spec"]["template"]["spec"]
    errors_s = (metric["consecutiveErrorLimit"] + 1) * ARGO_ERROR_RETRY_S
    # a restart: the grace period at most, then a start (startup probe, index reopened)
    assert errors_s >= pod["terminationGracePeriodSeconds"] + 60, errors_s
    assert pod["terminationGracePeriodSeconds"] >= SERVICE_STOP_S + 5


def test_the_template_passes_the_candidate_and_bounds_pending(serve):
    spec = serve["AnalysisTemplate"]["spec"]
    args = {a["name"]: a for a in spec["args"]}
    assert "value" not in args["candidate"]  # required: no empty default judging any rollout
    metric = spec["metrics"][0]
    url = metric["provider"]["web"]["url"]
    assert re.search(
        r"/api/v1/verdict\?target=\{\{args.target\}\}&candidate=\{\{args.candidate\}\}$", url
    )
    assert metric["provider"]["web"]["jsonPath"] == "{$.verdict}"
    assert (metric["successCondition"], metric["failureCondition"]) == (
        'result == "pass"',
        'result == "fail"',
    )
    assert metric["failureLimit"] == 0 and metric["consecutiveSuccessLimit"] >= 1
    # pending is bounded: the count is spent before the inconclusive limit lets it run on
    assert metric["count"] > metric["inconclusiveLimit"] >= 1
    interval_s = int(metric["interval"].rstrip("s"))
    assert metric["count"] * interval_s <= 3600


def test_the_pod_is_admitted_by_pod_security_restricted(serve):
    pod = serve["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        seccomp = ctx.get("seccompProfile") or pod["securityContext"].get("seccompProfile")
        assert seccomp["type"] in ("RuntimeDefault", "Localhost")
        assert container["livenessProbe"]["timeoutSeconds"] >= 3


def test_the_locust_workers_pod_is_admitted_by_pod_security_restricted():
    (pod,) = [
        d["spec"]["template"]["spec"]
        for d in yaml.safe_load_all((DEPLOY / "serve" / "workers.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_flagger_hooks_and_target_match_the_contract(serve):
    hooks = {h["type"]: h["url"] for h in serve["Canary"]["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"event", "confirm-promotion", "rollback"}
    assert hooks["event"].endswith("/api/v1/flagger/event")
    assert hooks["confirm-promotion"].endswith("/api/v1/flagger/gate")
    assert hooks["rollback"].endswith("/api/v1/flagger/rollback")
    canary = serve["Canary"]["metadata"]
    ref = f"{canary['namespace']}/{canary['name']}"
    config = tomllib.loads(serve["ConfigMap"]["data"]["serve.toml"])
    (target,) = [t for t in config["targets"] if ref in t.get("flagger", [])]
    # the traffic Flagger splits is the Service it routes: a url target, not a Workload
    assert "url" in target and "api" not in target
    assert f"{serve['Canary']['spec']['targetRef']['name']}.{canary['namespace']}" in target["url"]
    for t in config["targets"]:
        for expr in t.get("slo", []):
            parse_slo(expr)


def test_the_k8s_configmap_says_where_it_is_mounted():
    text = (DEPLOY / "k8s" / "configmap.yaml").read_text()
    said = re.search(r"mounted as (\S+?)\)", text)
    assert said is not None
    mounts = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):  # master and workers: both kinds
        for doc in filter(None, yaml.safe_load_all(path.read_text())):
            pod = (doc.get("spec") or {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                mounts += [m["mountPath"] for m in c.get("volumeMounts", [])
                           if m["name"] == "config"]  # fmt: skip
    assert len(mounts) >= 2 and all(said.group(1) == f"{m}/probes.toml" for m in mounts)
