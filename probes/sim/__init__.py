"""The embedded Workload platform (``probes sim``): control plane, invoke gateway and proton
processes on 127.0.0.1, following ``platform/workload-api.md`` and settling its open points
as ``platform/simulator-decisions.md`` says.

Use from Python::

    from probes.sim import Simulator, SimConfig
    with Simulator(SimConfig(scenario="gap", time_scale=60, token="t", seed=1)) as sim:
        sim.invoke_url, sim.api_url, sim.workload_id, sim.candidate_artifact_id, sim.labels
        sim.proton_request_counts()

Modules: ``app`` (the proton app, its own process), ``protons`` (process start/stop),
``state`` (the pure rollout/routing policy), ``wire`` (the typed JSON shapes of the API's
schemas), ``models`` (the platform's objects and their ``to_json``), ``engine`` (the records
and the replacement lifecycle), ``routing`` (which proton serves an invoke request: weights,
pins, gap, retirement), ``stats`` (per-proton request counts and latencies, the ``/stats``
metrics), ``control`` (``/api/v2`` routes), ``gateway`` (invoke routes), ``scenarios``
(``SimConfig``, knobs, named scenarios, their ranges), ``server`` (``Simulator``: one aiohttp
app on one port, in its own thread and event loop).

Choices beyond the decisions doc, in one place:

- Timestamps in JSON (``switchedAt``, ``createdAt``, …) are real wall-clock times; only
  durations are scaled by ``time_scale`` (warmup, keep-old, readiness probe delays and
  periods, ``startup_s``, ``ready_timeout``, ``shift_seconds``). What callers and pollers
  experience is real time: ``gap_ms``, ``completed_ttl``, ``upstream_timeout``, latencies,
  and ``dwell`` (each of ``submitted``, ``staged``, ``promoting``, ``canceling`` lasts at
  least 0.6 s real, longer than the watcher's 0.5 s poll, so a poller sees it).
- ``drop_inflight``: at the switch the gateway aborts the client connections of requests in
  flight on the old proton; callers see a reset/closed connection (no HTTP status). The
  stats count them as server errors of the old proton.
- The switch is atomic for *new connections* at ``switchedAt``. With ``pin_connections`` a
  client connection stays on the proton it first reached: the old proton keeps serving its
  pinned connections while ``draining`` and kept. The drain (``promoting``) ends when the old
  proton has no request in flight and no pinned connection open, or after ``drain_s``
  (platform s, default 30; ``sticky`` sets 180, 3 s real at ``--time-scale 60``), so busy
  keep-alive clients never hold a replacement up. After ``keepOldVersionMinutes`` (from
  ``switchedAt``) the old proton is *retired*: nothing new reaches it, idle pinned
  connections are closed, busy ones get ``Connection: close`` on their answer (clients
  reconnect to the new proton), and once its last request finished its processes stop.
  Stopping therefore never cuts a request (only ``drop_inflight`` does).
- Version label = ``f"{name}:{version}"``, ``f"{name}:draft"`` for a draft; ``promote``
  relabels the running proton in place. The simulator starts with two locked artifacts of
  the proton app, ``proton-app:1`` (baseline, running) and ``proton-app:2`` (candidate).
- App knobs travel in the artifact spec as the primary container's ``environmentVars``
  (``SIM_LATENCY_MS``, ``SIM_ERROR_RATE``, ``SIM_STARTUP_S``, ``SIM_NEVER_READY``,
  ``SIM_REVEAL_VERSION``), so artifacts made through the API behave the same way.
- Readiness probes follow the artifact's ``readinessProbe`` (documented defaults 30 s/30 s,
  ``successThreshold`` 1) and stop once a replica is ready (no liveness simulation). A
  replacement with ``ready_timeout`` unset waits for readiness forever, as documented.
- ``POST /promote`` answers 202; a replacement cannot be canceled once ``promoting``
  (409), nor once ``errored``/``completed``. ``DELETE /workloads/{id}`` is allowed during a
  replacement and stops every proton. Stopping during a replacement is 409.
- Proton processes exit when their stdin pipe closes, so even a killed simulator leaves no
  orphans.

Where the OpenAPI snapshot (v11.5, May 2026) and the newer clients disagree, or the spec is
silent on a response's meaning (``platform/workload-api.md`` decides; ``wire`` types it):

- Replacement statuses are the Terraform provider's vocabulary (``submitted, initializing,
  staged, promoting, canceling, finalizing, completed, errored``), not the snapshot's older
  one. The engine's own end state ``canceled`` is not in it: a canceled record keeps its
  last documented status ``canceling``, and its history entry says ``outcome: "canceled"``.
- Our own fields, and only these: ``kind`` on every replacement record (``replacement``,
  ``settings``, ``promote``) and ``outcome`` on history entries (``completed``, ``errored``,
  ``canceled``). Everything else is a documented field.
- ``creator`` is a ``UserData`` object and ``owners`` a list of them: one simulated user
  (``models.SIM_USER``), whose id is also every record's ``userId``; ``tenantId`` is a UUID4
  drawn once per simulator.
- Workloads carry ``description`` and ``statusDetails`` (null) although the snapshot's
  ``WorkloadFormatted`` lists neither: the provider and the skill read them. Their
  ``replacement`` block carries what the provider reads there (``id, workloadId,
  candidateArtifactId, config, runtime, message``) beside the snapshot's three fields.
  Artifact specs carry the read-only discriminator ``spec.type``. Readiness probes accept
  ``successThreshold`` (the provider's, Jul 2026); replica conditions carry ``value`` (what
  the skill reads live) beside the snapshot's ``met``.
- Promote writes a history entry shaped as a ``Replacement``: ``strategy: "rolling"``,
  ``config`` 0/0 (neither is nullable), same proton before and after, ``kind: "promote"``.
- Lists: ``limit`` 1..100, default 10 (the snapshot), beyond 100 a 422 (as the ``dr`` CLI
  documents); ``next``/``previous`` are absolute URLs keeping every other query parameter.
  List filters (``ids``, ``status``, ``importance``, ``artifactStatus``, ``type``, ``tagKeys``,
  ``tagValues``) take repeated keys (``?status=a&status=b``) or comma lists (``?ids=a,b``);
  a value outside the vocabulary is a 422. Nothing carries tags, so a tag filter matches none.
- ``GET …/stats`` without ``protonId`` reports the current (active) proton, as the snapshot
  says. Without ``startTime`` the period starts at that proton's start (or its last reset by
  promote); ``requestsPerMinute`` is the period's requests over its length in minutes, at
  least one minute, rounded (5 requests in a fresh proton: 5, not thousands);
  ``responseTime`` is the quantile in whole ms, 0 without requests. ``serviceStats=true``
  inlines the same numbers for the current proton (``errorRates``/``requestRates`` omitted).
"""

from probes.sim.scenarios import DEFAULT_KNOBS, SCENARIO_HELP, SCENARIOS, SimConfig
from probes.sim.server import Simulator

__all__ = ["DEFAULT_KNOBS", "SCENARIOS", "SCENARIO_HELP", "SimConfig", "Simulator"]
