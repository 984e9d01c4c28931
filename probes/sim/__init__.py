"""The embedded Workload platform simulator (``probes sim``): control plane, invoke gateway
and proton processes on 127.0.0.1. See ``platform/workload-api.md`` and
``platform/simulator-decisions.md`` for what it implements.

Public surface: :class:`Simulator`, :class:`SimConfig`, ``SCENARIOS``.
"""

from probes.sim.scenarios import DEFAULT_KNOBS, SCENARIO_HELP, SCENARIOS, SimConfig
from probes.sim.server import Simulator

__all__ = ["DEFAULT_KNOBS", "SCENARIOS", "SCENARIO_HELP", "SimConfig", "Simulator"]
