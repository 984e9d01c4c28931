"""proton-probe: rollout-aware load and canary probing of a stable invoke URL.

The public surface: the record formats, version tagging and run directories. Network code
lives in ``probes.canary`` (open-model probe), ``probes.workload`` (control-plane client),
``probes.watch`` (rollout watcher) and ``probes.sim`` (the embedded platform). Importing
``probes`` never imports Locust or gevent; only the Locust glue module does.
"""

from probes.errors import ConfigError, ProbesError, RunDirError, TargetError
from probes.records import (
    SAMPLE_COLUMNS,
    SAMPLE_SCHEMA,
    EventLog,
    Sample,
    ShardWriter,
    read_events,
    read_manifest,
    read_samples,
)
from probes.run import Run
from probes.settings import RequestSpec, build_request
from probes.tagging import DEFAULT_RULES, TagRules, tag

__all__ = [
    "DEFAULT_RULES",
    "SAMPLE_COLUMNS",
    "SAMPLE_SCHEMA",
    "ConfigError",
    "EventLog",
    "ProbesError",
    "RequestSpec",
    "Run",
    "RunDirError",
    "Sample",
    "ShardWriter",
    "TagRules",
    "TargetError",
    "build_request",
    "read_events",
    "read_manifest",
    "read_samples",
    "tag",
]
