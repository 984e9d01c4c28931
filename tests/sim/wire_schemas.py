"""JSON Schemas of the Workload API's answers, written for these tests from the field tables
of the public OpenAPI snapshot (v11.5) and ``platform/workload-api.md``.

Strict on purpose: every object lists its fields and refuses others (the snapshot's schemas
do the same), nullable only where the field table says so, integers where it says integer.
Where the newer clients (the Terraform provider, the ``dr`` CLI) and the snapshot disagree,
the schema follows ``workload-api.md`` as ``probes/sim/__init__.py`` records:

- replacement statuses are the Terraform provider's vocabulary (the snapshot's is older);
- a workload also has ``description`` and ``statusDetails`` (the provider and the skill read
  them), a probe ``successThreshold``, a replica condition ``value`` beside ``met``;
- the simulator's own fields, and only these, are allowed: ``kind`` on a replacement record
  (replacement, settings, promote) and ``outcome`` on a history record (completed, errored,
  canceled).
"""

from __future__ import annotations

from typing import Any

import jsonschema

Schema = dict[str, Any]

DATE_TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
}
UUID4 = {
    "type": "string",
    "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
}
STRING = {"type": "string"}
INT = {"type": "integer"}
NUMBER = {"type": "number"}
BOOL = {"type": "boolean"}
NULL = {"type": "null"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A closed object: these fields only, the first group required."""
    props = {**required, **(optional or {})}
    return {
        "type": "object",
        "properties": props,
        "required": sorted(required),
        "additionalProperties": False,
    }


def array(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


PROTON_STATUS = enum(
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
# the Terraform provider's vocabulary (Jul-Aug 2026), newer than the snapshot's
REPLACEMENT_STATUS = enum(
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
IMPORTANCE = enum("critical", "high", "moderate", "low")
ARTIFACT_STATUS = enum("draft", "locked")
ARTIFACT_TYPE = enum("service", "nim")
PERMISSIONS = {
    "anyOf": [
        array(
            enum(
                "CAN_VIEW",
                "CAN_UPDATE",
                "CAN_DELETE",
                "CAN_SHARE",
                "CAN_MAKE_PREDICTIONS",
                "CAN_SHARE_ROLE_OWNER",
                "CAN_SHARE_ROLE_READ_WRITE",
                "CAN_SHARE_ROLE_READ_ONLY",
            )
        ),
        array({"const": "*"}),
    ]
}
TAGS = array(obj({"id": STRING, "name": STRING, "value": STRING}))

USER = obj(
    {"id": STRING},
    {
        "email": nullable(STRING),
        "fullName": nullable(STRING),
        "userhash": nullable(STRING),
        "username": nullable(STRING),
    },
)

# ---- runtime and artifact spec ----------------------------------------------------------

RESOURCES = obj(
    {},
    {
        "cpu": nullable({"type": "number", "minimum": 0}),
        "gpu": nullable({"type": "number", "minimum": 0}),
        "memory": {"anyOf": [STRING, {"type": "integer", "minimum": 0}, NULL]},
        "gpuMemory": {"anyOf": [STRING, {"type": "integer", "minimum": 0}, NULL]},
    },
)
GROUP_RUNTIME = obj(
    {},
    {
        "name": STRING,
        "replicaCount": nullable({"type": "integer", "minimum": 1}),
        # both generations of autoscaling bounds are accepted (workload-api.md §1.5)
        "autoscaling": nullable({"type": "object"}),
        "containers": array(obj({"name": STRING}, {"resourceAllocation": nullable(RESOURCES)})),
        "resourceBundles": array(STRING),
        "bundleSelectionPolicy": enum("availability"),
        "resolvedBundle": nullable({"type": "object"}),
    },
)
RUNTIME = obj({}, {"containerGroups": array(GROUP_RUNTIME)})

PROBE = obj(
    {"path": STRING},
    {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "scheme": enum("HTTP", "HTTPS"),
        "host": nullable(STRING),
        "httpHeaders": {"type": "object", "additionalProperties": STRING},
        "initialDelaySeconds": INT,
        "periodSeconds": INT,
        "timeoutSeconds": INT,
        "failureThreshold": INT,
        "successThreshold": INT,  # the provider's addition (Jul 2026)
    },
)
ENV_VAR = {
    "type": "object",
    "properties": {"source": STRING, "name": STRING, "value": STRING},
    "required": ["name"],
}
CONTAINER = obj(
    {},
    {
        "name": nullable(STRING),
        "description": STRING,
        "imageUri": nullable(STRING),
        "primary": nullable(BOOL),
        "port": nullable({"type": "integer", "minimum": 1024, "maximum": 65535}),
        "entrypoint": nullable(array(STRING)),
        "environmentVars": array(ENV_VAR),
        "readinessProbe": nullable(PROBE),
        "livenessProbe": nullable(PROBE),
        "startupProbe": nullable(PROBE),
        "securityContext": nullable({"type": "object"}),
        "imageBuildConfig": nullable({"type": "object"}),
        "build": nullable({"type": "object"}),
    },
)
SPEC = obj(
    {},
    {
        "type": {"const": "service"},
        "containerGroups": array(obj({}, {"name": STRING, "containers": array(CONTAINER)})),
    },
)

# ---- the records ------------------------------------------------------------------------

ARTIFACT_INFO = {
    "type": "object",
    "properties": {
        "id": STRING,
        "name": nullable(STRING),
        "status": nullable(ARTIFACT_STATUS),
        "type": nullable(ARTIFACT_TYPE),
        "version": nullable(INT),
        "artifactRepositoryId": nullable(STRING),
    },
    "required": ["id"],
}
ARTIFACT = obj(
    {
        "id": STRING,
        "name": STRING,
        "createdAt": DATE_TIME,
        "updatedAt": DATE_TIME,
        "spec": SPEC,
        "artifactRepositoryId": nullable(STRING),
    },
    {
        "creator": nullable(USER),
        "description": STRING,
        "permissions": PERMISSIONS,
        "status": ARTIFACT_STATUS,
        "tags": TAGS,
        "type": ARTIFACT_TYPE,
        "version": nullable(INT),
    },
)
CONFIG = obj({}, {"warmupDurationMinutes": INT, "keepOldVersionMinutes": INT})
WORKLOAD_REPLACEMENT = {
    # open in the snapshot; the provider also reads the fields after the first three
    "type": "object",
    "properties": {
        "candidateProtonIds": array(STRING),
        "status": REPLACEMENT_STATUS,
        "strategy": enum("rolling"),
        "id": STRING,
        "workloadId": STRING,
        "candidateArtifactId": STRING,
        "config": CONFIG,
        "runtime": RUNTIME,
        "message": nullable(STRING),
    },
}
REQUEST_STATS = obj(
    {},
    {
        "totalRequests": INT,
        "errorRate": NUMBER,
        "errorRates": array(INT),
        "requestRates": array(INT),
        "responseTime": INT,
        "concurrentRequests": INT,
        "lastRequestAt": nullable(DATE_TIME),
    },
)
WORKLOAD = obj(
    {"id": STRING, "name": STRING, "createdAt": DATE_TIME, "updatedAt": DATE_TIME},
    {
        "description": STRING,
        "importance": IMPORTANCE,
        "status": PROTON_STATUS,
        "type": ARTIFACT_TYPE,
        "artifactId": nullable(STRING),
        "artifact": nullable(ARTIFACT_INFO),
        "protonId": nullable(STRING),
        "endpoint": nullable(STRING),
        "runtime": RUNTIME,
        "replacement": nullable(WORKLOAD_REPLACEMENT),
        "requestStats": nullable(REQUEST_STATS),
        "lastResponse": nullable(DATE_TIME),
        "statusDetails": nullable({"type": "object"}),
        "owners": array(USER),
        "creator": nullable(USER),
        "permissions": PERMISSIONS,
        "tags": TAGS,
    },
)
PROTON = obj(
    {
        "id": STRING,
        "name": STRING,
        "createdAt": DATE_TIME,
        "updatedAt": DATE_TIME,
        "status": PROTON_STATUS,
        "artifactId": STRING,
    },
    {
        "workloadId": nullable(STRING),
        "role": nullable(enum("active", "candidate")),
        "statusDetails": obj({}, {"logTail": nullable(array(STRING))}),
        "runtime": RUNTIME,
        "endpoint": nullable(STRING),
        "runningSince": nullable(DATE_TIME),
        "creator": nullable(USER),
    },
)
SNAPSHOT = obj(
    {
        "overallStatus": obj(
            {"state": PROTON_STATUS, "summary": STRING, "lastUpdated": STRING},
        ),
        "replicas": array(
            obj(
                {
                    "name": STRING,
                    "status": enum("pending", "running", "succeeded", "failed", "unknown"),
                    "address": STRING,
                    "nodeAddress": STRING,
                    "startedAt": nullable(STRING),
                    "conditions": array(
                        obj(
                            {"type": STRING, "met": nullable(BOOL), "since": STRING},
                            {"value": nullable(BOOL)},  # what the skill reads live
                        )
                    ),
                    "containers": array(
                        obj(
                            {
                                "name": STRING,
                                "status": enum("running", "waiting", "terminated", "unknown"),
                                "startedAt": nullable(STRING),
                                "ready": BOOL,
                                "restartCount": INT,
                                "image": STRING,
                            }
                        )
                    ),
                }
            )
        ),
    }
)
REPLACEMENT_FIELDS: dict[str, Schema] = {
    "candidateProtonIds": array(STRING),
    "previousProtonIds": nullable(array(STRING)),
    "strategy": enum("rolling"),
    "status": REPLACEMENT_STATUS,
    "config": CONFIG,
    "runtime": RUNTIME,
    "message": nullable(STRING),
    "switchedAt": nullable(DATE_TIME),
    "deletedAt": nullable(DATE_TIME),
    "isDeleted": BOOL,
    "kind": enum("replacement", "settings", "promote"),  # the simulator's own
}
REPLACEMENT_REQUIRED: dict[str, Schema] = {
    "id": STRING,
    "name": STRING,
    "createdAt": DATE_TIME,
    "updatedAt": DATE_TIME,
    "userId": STRING,
    "tenantId": UUID4,
    "workloadId": STRING,
    "candidateArtifactId": STRING,
}
REPLACEMENT = obj(REPLACEMENT_REQUIRED, REPLACEMENT_FIELDS)
HISTORY_ENTRY = obj(
    {**REPLACEMENT_REQUIRED, "outcome": enum("completed", "errored", "canceled")},
    REPLACEMENT_FIELDS,
)
METRICS = obj(
    {},
    {
        "totalRequests": INT,
        "serverErrors": INT,
        "userErrors": INT,
        "slowRequests": INT,
        "responseTime": INT,
        "requestsPerMinute": INT,
        "concurrentRequests": INT,
        "serverErrorRate": NUMBER,
        "userErrorRate": NUMBER,
        "totalErrorRate": NUMBER,
    },
)
STATS = obj(
    {},
    {
        "metrics": METRICS,
        "period": nullable(obj({}, {"start": nullable(DATE_TIME), "end": nullable(DATE_TIME)})),
    },
)
EVENT = obj(
    {"id": STRING, "workloadId": STRING, "timestamp": DATE_TIME, "eventType": STRING},
    {"actorId": nullable(STRING), "details": nullable({"type": "object"})},
)
OPERATION = obj({"status": STRING, "workloadId": STRING, "trackVia": STRING})
SETTINGS = obj({}, {"runtime": RUNTIME})


def page_of(item: Schema) -> Schema:
    """The list envelope: every field required, ``next``/``previous`` URL or null."""
    return obj(
        {
            "totalCount": INT,
            "count": INT,
            "next": nullable(STRING),
            "previous": nullable(STRING),
            "data": array(item),
        }
    )


# ---- error bodies -----------------------------------------------------------------------

VALIDATION_ERROR = {
    "type": "object",
    "properties": {
        "detail": array(
            {
                "type": "object",
                "properties": {
                    "loc": array({"anyOf": [STRING, INT]}),
                    "msg": STRING,
                    "type": STRING,
                    "input": {},
                    "ctx": {"type": "object"},
                },
                "required": ["loc", "msg", "type"],
            }
        )
    },
    "required": ["detail"],
}
DETAIL_ERROR = obj({"detail": STRING})
INVOKE_ERROR = obj({"message": STRING})


def error_schema(status: int) -> Schema:
    """A control-plane error is ``{"detail": text}``; a 422 may also be a validation list
    (request shape) where the route documents one (a refused promote or replacement: text)."""
    return {"anyOf": [VALIDATION_ERROR, DETAIL_ERROR]} if status == 422 else DETAIL_ERROR


def problems(schema: Schema, body: Any) -> list[str]:
    """Every way ``body`` breaks ``schema``, one line each (empty: it conforms)."""
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in validator.iter_errors(body)
    )
