"""The simulated platform's objects and their documented JSON shapes (workload-api.md §1).

Every ``to_json`` returns one of the typed shapes of :mod:`probes.sim.wire`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast, overload

from probes.sim import state, wire
from probes.sim.protons import Replica

PROBE_DEFAULTS = {
    "path": "/health",
    "port": 8080,
    "scheme": "HTTP",
    "initialDelaySeconds": 30,
    "periodSeconds": 30,
    "timeoutSeconds": 30,
    "failureThreshold": 3,
    "successThreshold": 1,
}
SIM_ENV = (
    "SIM_LATENCY_MS",
    "SIM_ERROR_RATE",
    "SIM_STARTUP_S",
    "SIM_NEVER_READY",
    "SIM_REVEAL_VERSION",
    "SIM_FIRST_TOKEN_MS",
    "SIM_INTER_TOKEN_MS",
    "SIM_TOKENS",
    "SIM_ABORT_SHARE",
)
DEFAULT_RUNTIME: dict[str, Any] = {"containerGroups": [{"name": "default", "replicaCount": 1}]}
#: the one user of the simulated platform: creator and owner of everything, and ``userId``
SIM_USER: wire.UserData = {
    "id": "5e1f00000000000000000001",
    "username": "sim-user",
    "fullName": "Simulator User",
    "email": None,
    "userhash": None,
}


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: None) -> None: ...
@overload
def iso(ts: float | None) -> str | None: ...
def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (milliseconds), None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def primary_container(spec: dict[str, Any]) -> dict[str, Any]:
    """The primary container of the first container group (the one receiving traffic)."""
    groups = spec.get("containerGroups") or [{}]
    containers = groups[0].get("containers") or [{}]
    return next((c for c in containers if c.get("primary")), containers[0])


def replica_count(runtime: dict[str, Any]) -> int:
    """Replicas asked for by a runtime: ``replicaCount``, or the autoscaling minimum."""
    groups = runtime.get("containerGroups") or [{}]
    group = groups[0]
    auto = group.get("autoscaling") or {}
    if auto.get("enabled"):
        return int(auto.get("minReplicaCount") or auto.get("minCount") or 1)
    return int(group.get("replicaCount") or 1)


@dataclass
class Artifact:
    id: str
    name: str
    spec: dict[str, Any]
    repo_id: str
    description: str = ""
    type: str = "service"
    status: str = "draft"
    version: int | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        """The version label: ``name:version``, ``name:draft`` for an unversioned draft."""
        return f"{self.name}:{self.version if self.version is not None else 'draft'}"

    def app_env(self) -> dict[str, str]:
        """The ``SIM_*`` knobs of the primary container's string environment variables."""
        env = {}
        for var in primary_container(self.spec).get("environmentVars") or []:
            if var.get("source", "string") == "string" and var.get("name") in SIM_ENV:
                env[var["name"]] = str(var.get("value", ""))
        return env

    def probe(self) -> dict[str, Any]:
        """The primary container's readiness probe with documented defaults filled in."""
        return {**PROBE_DEFAULTS, **(primary_container(self.spec).get("readinessProbe") or {})}

    def summary(self) -> wire.ArtifactInfo:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "type": self.type,
            "version": self.version,
            "artifactRepositoryId": self.repo_id,
        }

    def to_json(self) -> wire.Artifact:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "type": self.type,
            "version": self.version,
            "artifactRepositoryId": self.repo_id,
            "description": self.description,
            # the read-only discriminator the platform injects from the top-level type
            "spec": {**self.spec, "type": self.type},
            "creator": SIM_USER,
            "tags": [],
            "permissions": ["*"],
            "createdAt": iso(self.created),
            "updatedAt": iso(self.updated),
        }


@dataclass
class Proton:
    id: str
    workload_id: str
    artifact_id: str
    label: str
    runtime: dict[str, Any]
    role: wire.Role | None
    replicas: list[Replica] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    running_since: float | None = None
    spawning: bool = False
    stopping: bool = False
    stopped: bool = False
    warming: bool = False
    draining: bool = False
    retired: bool = False  # after the keep-old window: no request is routed here any more
    snapshot: bool = False  # a status snapshot exists (statusDetails 204 before)
    last_status: str = "submitted"
    rr: int = 0  # round-robin cursor over ready replicas
    inflight: dict[int, tuple[asyncio.Task[Any], asyncio.BaseTransport | None]] = field(
        default_factory=dict
    )
    lifecycle_task: asyncio.Task[None] | None = None

    @property
    def spawned(self) -> bool:
        return bool(self.replicas) and all(r.port is not None for r in self.replicas)

    @property
    def ready(self) -> bool:
        return self.spawned and all(r.ready and r.alive for r in self.replicas)

    @property
    def failed(self) -> str | None:
        return next((r.failed for r in self.replicas if r.failed), None)

    @property
    def status(self) -> str:
        if not self.replicas and not self.spawning and not self.stopped:
            return "submitted"
        return state.proton_status(
            stopped=self.stopped,
            spawned=self.spawned,
            ready=self.ready,
            warming=self.warming,
            draining=self.draining,
            failed=self.failed is not None,
            stopping=self.stopping,
        )

    def routable(self) -> list[Replica]:
        """Replicas that may receive requests: alive and ready (none once retired)."""
        if self.retired:
            return []
        return [r for r in self.replicas if r.ready and r.port is not None and r.alive]

    def to_json(self, endpoint: str | None) -> wire.Proton:
        tail = [
            f"replica {r.name}: " + ("ready" if r.ready else "not ready") for r in self.replicas
        ]
        return {
            "id": self.id,
            "name": f"proton-{self.id[-6:]}",
            "workloadId": self.workload_id,
            "artifactId": self.artifact_id,
            "role": self.role,
            "status": self.status,
            "statusDetails": {"logTail": tail},
            "runtime": self.runtime,
            "endpoint": endpoint,
            "runningSince": iso(self.running_since),
            "creator": SIM_USER,
            "createdAt": iso(self.created),
            "updatedAt": iso(self.updated),
        }

    def details(self, image: str) -> dict[str, Any]:
        """The ``ReplicaStatusesSnapshot`` of statusDetails."""
        status = self.status
        replicas = []
        for r in self.replicas:
            phase = (
                "failed"
                if r.failed
                else "running"
                if r.alive
                else "succeeded"
                if r.proc is not None
                else "pending"
            )
            replicas.append(
                {
                    "name": r.name,
                    "status": phase,
                    "address": r.address,
                    "nodeAddress": "127.0.0.1",
                    "startedAt": iso(r.started_at),
                    "conditions": [
                        {
                            "type": "Ready",
                            "met": r.ready,
                            "value": r.ready,
                            "since": iso(r.ready_since or r.started_at),
                        }
                    ],
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "status": "running" if r.alive else "terminated",
                            "ready": r.ready,
                            "restartCount": 0,
                            "startedAt": iso(r.started_at),
                        }
                    ],
                }
            )
        ready = sum(1 for r in self.replicas if r.ready)
        return {
            "overallStatus": {
                "state": status,
                "summary": f"{ready}/{len(self.replicas)} replicas ready",
                "lastUpdated": iso(self.updated),
            },
            "replicas": replicas,
        }


@dataclass
class Replacement:
    id: str
    workload_id: str
    candidate_artifact_id: str
    previous_proton_ids: list[str]
    config: dict[str, int]
    runtime: dict[str, Any]
    rollout: state.Rollout
    epoch_of: Any  # platform seconds -> epoch seconds
    tenant_id: str
    candidate_proton_ids: list[str] = field(default_factory=list)
    strategy: str = "rolling"
    kind: wire.Kind = "replacement"  # or "settings", "promote"
    cancel_requested: bool = False
    hidden: bool = False
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        """The engine's status (``canceled`` included, see :func:`state.public_status`)."""
        return self.rollout.status

    def to_json(self) -> wire.Replacement:
        r = self.rollout
        switched = iso(self.epoch_of(r.switched_at)) if r.switched_at is not None else None
        config: wire.ReplacementConfig = {
            "warmupDurationMinutes": int(self.config.get("warmupDurationMinutes", 0)),
            "keepOldVersionMinutes": int(self.config.get("keepOldVersionMinutes", 0)),
        }
        return {
            "id": self.id,
            "name": f"replacement-{self.id[-6:]}",
            "workloadId": self.workload_id,
            "candidateArtifactId": self.candidate_artifact_id,
            "candidateProtonIds": list(self.candidate_proton_ids),
            "previousProtonIds": list(self.previous_proton_ids),
            "strategy": self.strategy,
            "config": config,
            "runtime": self.runtime,
            "status": state.public_status(r.status),
            "message": r.message,
            "switchedAt": switched,
            "kind": self.kind,
            "createdAt": iso(self.created),
            "updatedAt": iso(self.updated),
            "deletedAt": None,
            "isDeleted": False,
            "userId": SIM_USER["id"],
            "tenantId": self.tenant_id,
        }

    def history_entry(self) -> wire.HistoryEntry:
        """The record as history lists it once over, with its ``outcome`` (ours)."""
        outcome = self.rollout.status
        assert outcome in wire.OUTCOMES, outcome
        return {**self.to_json(), "outcome": cast(wire.Outcome, outcome)}

    def brief(self) -> wire.WorkloadReplacement:
        """The ``replacement`` block of a workload."""
        full = self.to_json()
        return {
            "id": self.id,
            "workloadId": self.workload_id,
            "candidateArtifactId": self.candidate_artifact_id,
            "candidateProtonIds": list(self.candidate_proton_ids),
            "status": full["status"],
            "strategy": self.strategy,
            "config": full["config"],
            "runtime": self.runtime,
            "message": self.rollout.message,
        }


@dataclass
class Workload:
    id: str
    name: str
    artifact_id: str
    runtime: dict[str, Any]
    description: str = ""
    importance: str = "low"
    type: str = "service"
    proton_id: str | None = None
    replacement: Replacement | None = None
    history: list[wire.HistoryEntry] = field(default_factory=list)
    events: list[wire.WorkloadEvent] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    last_status: str = "submitted"
