"""Recording as a library: observe, load and capacity runs, startable, stoppable, testable.

The CLI (``probes observe|load|capacity``) and the service (``probes serve``) are two thin
callers of these functions. Each takes typed, frozen settings — the request
(``probes.settings.RequestSpec``), the verb's settings, where the run goes
(``RunLocation``) — and a **caller-owned stop event**; it returns an ``Outcome`` (run
directory, summary, interrupted-by, warnings, whether the target was unusable). Progress
goes to a ``Progress`` (the CLI's status line is one; the service's live view another).

Nothing here prints, exits, installs a signal handler or names a flag: settings built with
``*.build(..., place=...)`` or ``settings_from_args`` name the flag or key their values
came from. Importing this package never imports click, the CLI, Locust or gevent (Locust
runs as a subprocess: ``locustproc``).

    stop = Stop()
    outcome = observe(build_request(url), RunLocation(Path("runs")),
                      ObserveSettings.build(rate=10, duration=60), stop=stop)
"""

from probes.recording.args import ARGS, settings_from_args
from probes.recording.capacity import CapacitySettings, StepWatch, capacity
from probes.recording.finish import target_unusable
from probes.recording.load import LoadSettings, load
from probes.recording.locustproc import LocustSettings, ShardFollower, stop_locust
from probes.recording.observation import ObserveSettings, observe
from probes.recording.types import (
    NoProgress,
    Outcome,
    Platform,
    Progress,
    RunLocation,
    Stop,
    stop_reason,
)

__all__ = [
    "ARGS",
    "CapacitySettings",
    "LoadSettings",
    "LocustSettings",
    "NoProgress",
    "ObserveSettings",
    "Outcome",
    "Platform",
    "Progress",
    "RunLocation",
    "ShardFollower",
    "StepWatch",
    "Stop",
    "capacity",
    "load",
    "observe",
    "settings_from_args",
    "stop_locust",
    "stop_reason",
    "target_unusable",
]
