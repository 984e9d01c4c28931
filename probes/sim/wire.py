"""The JSON shapes the simulator answers with, typed from the Workload API's schemas.

One ``TypedDict`` per documented schema (names as in the OpenAPI snapshot, v11.5): field
names, types, which fields are required (``NotRequired`` marks the others) and which may be
null (``| None``). Every ``to_json`` in :mod:`probes.sim.models` and every answer built in
:mod:`probes.sim.control` is declared with these types, so mypy refuses a missing required
field, a misspelt one, a float where the schema says integer or a null where it says not
nullable. Where the snapshot and the newer clients disagree, the shape follows
``platform/workload-api.md`` as ``probes/sim/__init__.py`` records; the simulator's own
fields (``kind``, ``outcome``) are marked as such.

The vocabularies (``PROTON_STATUSES``, ``REPLACEMENT_STATUSES``, …) are the ones the list
filters validate against.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

PROTON_STATUSES = (
    "unknown",
    "submitted",
    "initializing",
    "provisioning",
    "launching",
    "running",
    "warming",
    "draining",
    "stopping",
    "stopped",
    "errored",
    "terminated",
)
#: the Terraform provider's vocabulary (newer than the snapshot's, see ``__init__``)
REPLACEMENT_STATUSES = (
    "unknown",
    "submitted",
    "initializing",
    "staged",
    "promoting",
    "canceling",
    "finalizing",
    "completed",
    "errored",
)
IMPORTANCES = ("critical", "high", "moderate", "low")
ARTIFACT_STATUSES = ("draft", "locked")
ARTIFACT_TYPES = ("service", "nim")
#: how a replacement ended, the simulator's own field on history records
OUTCOMES = ("completed", "errored", "canceled")
MAX_PAGE = 100
DEFAULT_PAGE = 10

Kind = Literal["replacement", "settings", "promote"]
Role = Literal["active", "candidate"]
Outcome = Literal["completed", "errored", "canceled"]

T = TypeVar("T")


class UserData(TypedDict):
    id: str
    username: str | None
    fullName: str | None
    email: str | None
    userhash: str | None


class ArtifactInfo(TypedDict):
    """``ArtifactInfoFormatted``: the active artifact's summary inside a workload."""

    id: str
    name: str | None
    status: str | None
    type: str | None
    version: int | None
    artifactRepositoryId: str | None


class Artifact(TypedDict):
    """``ArtifactFormatted``."""

    id: str
    name: str
    createdAt: str
    updatedAt: str
    spec: dict[str, Any]
    artifactRepositoryId: str | None
    description: NotRequired[str]
    type: NotRequired[str]
    status: NotRequired[str]
    version: NotRequired[int | None]
    creator: NotRequired[UserData | None]
    tags: NotRequired[list[dict[str, str]]]
    permissions: NotRequired[list[str]]


class ReplacementConfig(TypedDict):
    warmupDurationMinutes: int
    keepOldVersionMinutes: int


class WorkloadReplacement(TypedDict):
    """``WorkloadReplacementFormatted`` plus what the Terraform provider reads there."""

    id: str
    workloadId: str
    candidateArtifactId: str
    candidateProtonIds: list[str]
    status: str
    strategy: str
    config: ReplacementConfig
    runtime: dict[str, Any]
    message: str | None


class RequestStats(TypedDict):
    """``RequestStats`` (``serviceStats=true`` on a workload list): integers but the rate."""

    totalRequests: int
    errorRate: float
    responseTime: int
    concurrentRequests: int
    lastRequestAt: str | None


class Workload(TypedDict):
    """``WorkloadFormatted`` (+ ``description`` and ``statusDetails``, see ``__init__``)."""

    id: str
    name: str
    createdAt: str
    updatedAt: str
    description: NotRequired[str]
    importance: NotRequired[str]
    status: NotRequired[str]
    type: NotRequired[str]
    artifactId: NotRequired[str | None]
    artifact: NotRequired[ArtifactInfo | None]
    protonId: NotRequired[str | None]
    endpoint: NotRequired[str | None]
    runtime: NotRequired[dict[str, Any]]
    replacement: NotRequired[WorkloadReplacement | None]
    requestStats: NotRequired[RequestStats | None]
    lastResponse: NotRequired[str | None]
    statusDetails: NotRequired[dict[str, Any] | None]
    owners: NotRequired[list[UserData]]
    creator: NotRequired[UserData | None]
    permissions: NotRequired[list[str]]
    tags: NotRequired[list[dict[str, str]]]


class ProtonStatusDetails(TypedDict):
    logTail: list[str] | None


class Proton(TypedDict):
    """``ProtonFormatted``."""

    id: str
    name: str
    createdAt: str
    updatedAt: str
    status: str
    artifactId: str
    workloadId: NotRequired[str | None]
    role: NotRequired[Role | None]
    statusDetails: NotRequired[ProtonStatusDetails]
    runtime: NotRequired[dict[str, Any]]
    endpoint: NotRequired[str | None]
    runningSince: NotRequired[str | None]
    creator: NotRequired[UserData | None]


class Replacement(TypedDict):
    """``Replacement`` (+ ``kind``, the simulator's own: what started it)."""

    id: str
    name: str
    createdAt: str
    updatedAt: str
    userId: str
    tenantId: str
    workloadId: str
    candidateArtifactId: str
    candidateProtonIds: list[str]
    previousProtonIds: list[str] | None
    strategy: str
    status: str
    config: ReplacementConfig
    runtime: dict[str, Any]
    message: str | None
    switchedAt: str | None
    deletedAt: str | None
    isDeleted: bool
    kind: Kind


class HistoryEntry(Replacement):
    """A ``Replacement`` in the history list (+ ``outcome``, the simulator's own)."""

    outcome: Outcome


class RequestMetrics(TypedDict):
    """``RequestMetrics``: counts and milliseconds are integers, the rates numbers."""

    totalRequests: int
    serverErrors: int
    userErrors: int
    slowRequests: int
    responseTime: int
    requestsPerMinute: int
    concurrentRequests: int
    serverErrorRate: float
    userErrorRate: float
    totalErrorRate: float


class Period(TypedDict):
    start: str | None
    end: str | None


class ProtonRequestStats(TypedDict):
    """``ProtonRequestStats``: the answer of ``GET /workloads/{id}/stats``."""

    metrics: RequestMetrics
    period: Period | None


class WorkloadEvent(TypedDict):
    id: str
    workloadId: str
    timestamp: str
    eventType: str
    actorId: str | None
    details: dict[str, Any] | None


class Operation(TypedDict):
    """``WorkloadOperationResponse`` (start, stop)."""

    status: str
    workloadId: str
    trackVia: str


class Page(TypedDict, Generic[T]):
    """A list envelope; ``next``/``previous`` are absolute URLs keeping the query."""

    totalCount: int
    count: int
    next: str | None
    previous: str | None
    data: list[T]


class ValidationError(TypedDict):
    loc: list[str | int]
    msg: str
    type: str
    input: Any
    ctx: dict[str, Any]


__all__ = [
    "ARTIFACT_STATUSES",
    "ARTIFACT_TYPES",
    "DEFAULT_PAGE",
    "IMPORTANCES",
    "MAX_PAGE",
    "OUTCOMES",
    "PROTON_STATUSES",
    "REPLACEMENT_STATUSES",
    "Artifact",
    "ArtifactInfo",
    "HistoryEntry",
    "Kind",
    "Operation",
    "Outcome",
    "Page",
    "Period",
    "Proton",
    "ProtonRequestStats",
    "ProtonStatusDetails",
    "Replacement",
    "ReplacementConfig",
    "RequestMetrics",
    "RequestStats",
    "Role",
    "UserData",
    "ValidationError",
    "Workload",
    "WorkloadEvent",
    "WorkloadReplacement",
]
