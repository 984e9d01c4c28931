"""The simulated platform's engine: its records and the replacement lifecycle.

One :class:`Engine` lives on the simulator's event loop and holds the artifacts, workloads,
protons (with their replacements and events). A tick task advances every replacement through
:func:`probes.sim.state.next_state` and performs the actions it returns; proton replicas are
real processes (:mod:`probes.sim.protons`) probed for readiness on the schedule of their
artifact's ``readinessProbe`` (scaled by ``time_scale``).

Two collaborators have their own modules: :attr:`Engine.router` (:mod:`probes.sim.routing`,
which proton serves a request) and :attr:`Engine.stats` (:mod:`probes.sim.stats`, what the
gateway saw per proton).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from typing import Any

import aiohttp

from probes.sim import protons, state, wire
from probes.sim.models import Artifact, Proton, Replacement, Workload, iso, replica_count
from probes.sim.protons import Replica
from probes.sim.routing import Router
from probes.sim.stats import Stats

TICK_S = 0.01
MIN_PROBE_PERIOD_S = 0.02


class Clock:
    """Platform time: seconds since start, running ``scale`` times faster than real time."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.t0_mono = time.monotonic()
        self.t0_epoch = time.time()

    def now(self) -> float:
        return (time.monotonic() - self.t0_mono) * self.scale

    def epoch_of(self, platform: float) -> float:
        return self.t0_epoch + platform / self.scale

    def real(self, platform_s: float) -> float:
        return platform_s / self.scale


class Engine:
    """All platform records and the lifecycle that moves them.

    Public surface: the records (``artifacts``, ``workloads``, ``protons``), ``router``,
    ``stats``, ``clock``; ``new_id``, ``timing``, ``endpoint``; ``start``/``close``/``tick``;
    ``new_proton``, ``start_proton``, ``stop_proton``; the queries ``workload_proton_ids``,
    ``workload_status``, ``concurrent``; ``event``; ``spawn_task``.
    """

    def __init__(self, knobs: dict[str, Any], scale: float, seed: int | None) -> None:
        self.knobs = knobs
        self.clock = Clock(scale)
        self.rng = random.Random(seed)
        self.artifacts: dict[str, Artifact] = {}
        self.workloads: dict[str, Workload] = {}
        self.protons: dict[str, Proton] = {}
        self.stats = Stats()
        self.router = Router(
            self.protons,
            self.clock.now,
            pin_connections=bool(knobs["pin_connections"]),
            seed=None if seed is None else seed + 1,
        )
        self.base_url = ""
        self.repo_id = self.new_id()
        #: the one tenant of the simulated platform (``Replacement.tenantId``, a UUID4)
        self.tenant_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.event_seq = 0
        self.seed = seed

    # ---- ids, tasks, timing -------------------------------------------------------------

    def new_id(self) -> str:
        """A 24-hex id like the platform's (seeded: reproducible runs)."""
        return f"{self.rng.getrandbits(96):024x}"

    def spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def timing(self, config: dict[str, int]) -> state.Timing:
        """Replacement timing in platform seconds; real-time knobs converted by the scale."""
        k, c = self.knobs, self.clock
        ready_timeout = k["ready_timeout"]
        return state.Timing(
            warmup_s=60.0 * float(config.get("warmupDurationMinutes", 0)),
            keep_old_s=60.0 * float(config.get("keepOldVersionMinutes", 0)),
            shift_s=float(k["shift_seconds"]),
            gap_s=float(k["gap_ms"]) / 1000.0 * c.scale,
            drain_s=float(k["drain_s"]),
            dwell_s=float(k["dwell"]) * c.scale,
            completed_ttl_s=float(k["completed_ttl"]) * c.scale,
            ready_timeout_s=None if ready_timeout is None else float(ready_timeout),
        )

    def endpoint(self, workload_id: str) -> str:
        return f"{self.base_url}/api/v2/endpoints/workloads/{workload_id}/"

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pooled upstream session and start ticking."""
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def close(self) -> None:
        """Stop ticking, stop every proton process, close the session."""
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await asyncio.gather(
            *(self.stop_proton(p) for p in list(self.protons.values())), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        if self.session:
            await self.session.close()

    async def _tick_loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # one bad tick must not stop the platform
                print(f"probes.sim: tick failed: {exc!r}", file=sys.stderr)
            await asyncio.sleep(TICK_S)

    def tick(self) -> None:
        """Advance every replacement and record every status change as an event."""
        now = self.clock.now()
        self.router.purge()
        for wl in list(self.workloads.values()):
            rep = wl.replacement
            if rep is not None and not rep.hidden:
                self._advance(wl, rep, now)
            for pid in self.workload_proton_ids(wl):
                self._note_proton(wl, self.protons[pid])
            status = self.workload_status(wl)
            if status != wl.last_status:
                wl.last_status = status
                wl.updated = time.time()
                self.event(
                    wl, "workload", status, {"protonId": wl.proton_id, "artifactId": wl.artifact_id}
                )

    def _advance(self, wl: Workload, rep: Replacement, now: float) -> None:
        before = rep.rollout
        facts = self.facts(wl, rep)
        after, actions = state.next_state(before, now, facts)
        rep.rollout = after
        for action in actions:
            getattr(self, f"_do_{action}")(wl, rep)
        if after.status != before.status:
            rep.updated = time.time()
            self.event(
                wl, "replacement", after.status, {"replacementId": rep.id, "message": after.message}
            )
            if after.status in state.OUTCOMES:
                wl.history.insert(0, rep.history_entry())
        # the candidate shows `warming` while inside its warmup window
        cand = self.candidate(rep)
        if cand is not None:
            cand.warming = after.status == "initializing" and after.ready_at is not None

    def facts(self, wl: Workload, rep: Replacement) -> state.Facts:
        cand = self.candidate(rep)
        old = self.protons.get(rep.previous_proton_ids[0]) if rep.previous_proton_ids else None
        return state.Facts(
            candidate_spawned=bool(cand and cand.spawned),
            candidate_ready=bool(cand and cand.ready),
            candidate_failed=cand.failed if cand else None,
            cancel_requested=rep.cancel_requested,
            candidate_stopped=cand is None or cand.stopped,
            old_inflight=len(old.inflight) if old else 0,
            old_pinned=self.router.pinned_to(old.id) if old else 0,
            old_stopped=old is None or old.stopped,
        )

    def candidate(self, rep: Replacement) -> Proton | None:
        return self.protons.get(rep.candidate_proton_ids[0]) if rep.candidate_proton_ids else None

    # actions named by state.next_state

    def _do_spawn_candidate(self, wl: Workload, rep: Replacement) -> None:
        art = self.artifacts[rep.candidate_artifact_id]
        proton = self.new_proton(wl, art, rep.runtime, role="candidate")
        rep.candidate_proton_ids = [proton.id]

    def _do_stop_candidate(self, wl: Workload, rep: Replacement) -> None:
        cand = self.candidate(rep)
        if cand is not None:
            self.spawn_task(self.stop_proton(cand))

    def _do_switch(self, wl: Workload, rep: Replacement) -> None:
        cand = self.candidate(rep)
        assert cand is not None
        for pid in rep.previous_proton_ids:
            old = self.protons[pid]
            old.role, old.draining, old.updated = None, True, time.time()
        cand.role, cand.warming, cand.updated = "active", False, time.time()
        wl.proton_id, wl.artifact_id, wl.runtime = cand.id, cand.artifact_id, rep.runtime
        wl.updated = time.time()

    def _do_cut_old_inflight(self, wl: Workload, rep: Replacement) -> None:
        if not self.knobs["drop_inflight"]:
            return
        for pid in rep.previous_proton_ids:
            for task, transport in list(self.protons[pid].inflight.values()):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()  # the client sees its connection reset
                task.cancel()

    def _do_retire_old(self, wl: Workload, rep: Replacement) -> None:
        """No request reaches the old protons any more; close the connections pinned to
        them (see :meth:`Router.release`)."""
        for pid in rep.previous_proton_ids:
            old = self.protons[pid]
            old.retired, old.updated = True, time.time()
            self.router.release(old)

    def _do_stop_old(self, wl: Workload, rep: Replacement) -> None:
        for pid in rep.previous_proton_ids:
            old = self.protons[pid]
            if not old.stopping and not old.stopped:
                self.spawn_task(self.stop_proton(old))

    def _do_clear(self, wl: Workload, rep: Replacement) -> None:
        rep.hidden = True
        if wl.replacement is rep:
            wl.replacement = None
            wl.updated = time.time()

    # ---- protons ---------------------------------------------------------------------------

    def new_proton(
        self, wl: Workload, art: Artifact, runtime: dict[str, Any], role: wire.Role | None
    ) -> Proton:
        """Create a proton record and start its replicas in the background."""
        proton = Proton(
            id=self.new_id(),
            workload_id=wl.id,
            artifact_id=art.id,
            label=art.label,
            runtime=runtime,
            role=role,
        )
        self.protons[proton.id] = proton
        self.stats.open(proton.id)
        self.start_proton(proton)
        return proton

    def start_proton(self, proton: Proton) -> None:
        art = self.artifacts[proton.artifact_id]
        n = replica_count(proton.runtime)
        proton.replicas = [Replica(name=f"{proton.id[-6:]}-{i}") for i in range(n)]
        proton.stopped = proton.stopping = proton.draining = False
        proton.spawning = True
        proton.lifecycle_task = self.spawn_task(self._run_proton(proton, art))

    async def _run_proton(self, proton: Proton, art: Artifact) -> None:
        env = {
            **self._app_env(proton, art),
            "SIM_VERSION": proton.label,
            "SIM_TIME_SCALE": str(self.clock.scale),
        }
        results = await asyncio.gather(
            *(self._start_replica(proton, r, env, i, art) for i, r in enumerate(proton.replicas)),
            return_exceptions=True,
        )
        proton.spawning = False
        for replica, result in zip(proton.replicas, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                replica.failed = str(result)

    def _app_env(self, proton: Proton, art: Artifact) -> dict[str, str]:
        env = art.app_env()
        if self.seed is not None:
            env.setdefault("SIM_SEED", str(self.seed))
        return env

    async def _start_replica(
        self, proton: Proton, replica: Replica, env: dict[str, str], index: int, art: Artifact
    ) -> None:
        seed_env = {**env}
        if "SIM_SEED" in env:
            seed_env["SIM_SEED"] = str(int(env["SIM_SEED"]) + index)
        replica.proc, replica.port = await protons.spawn(seed_env)
        replica.started_at = time.time()
        proton.snapshot = True
        proton.updated = time.time()
        replica.probe_task = self.spawn_task(self._probe(proton, replica, art.probe()))
        self.spawn_task(self._watch_exit(proton, replica))

    async def _watch_exit(self, proton: Proton, replica: Replica) -> None:
        assert replica.proc is not None
        code = await replica.proc.wait()
        if not proton.stopping and not proton.stopped:
            replica.failed = f"replica {replica.name} exited with code {code}"
            replica.ready = False
            proton.updated = time.time()

    async def _probe(self, proton: Proton, replica: Replica, probe: dict[str, Any]) -> None:
        """Readiness probing on the artifact's schedule (scaled) until the replica is ready."""
        c = self.clock
        assert self.session is not None
        await asyncio.sleep(c.real(float(probe["initialDelaySeconds"])))
        period = max(MIN_PROBE_PERIOD_S, c.real(float(probe["periodSeconds"])))
        timeout = aiohttp.ClientTimeout(total=max(0.05, c.real(float(probe["timeoutSeconds"]))))
        url = f"http://127.0.0.1:{replica.port}{probe.get('path') or '/health'}"
        threshold = int(probe.get("successThreshold") or 1)
        while replica.alive and not proton.stopping:
            status: int | None
            try:
                async with self.session.get(url, timeout=timeout) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            replica.streak, ready = state.readiness(replica.streak, status, threshold)
            if ready:
                replica.ready, replica.ready_since = True, time.time()
                proton.updated = time.time()
                return
            await asyncio.sleep(period)

    async def stop_proton(self, proton: Proton) -> None:
        """Stop every replica process of a proton (no-op when already stopped)."""
        if proton.stopped:
            return
        proton.stopping = True
        proton.updated = time.time()
        task = proton.lifecycle_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for replica in proton.replicas:
            if replica.probe_task is not None:
                replica.probe_task.cancel()
            replica.ready = False
        await asyncio.gather(
            *(protons.stop(r.proc) for r in proton.replicas), return_exceptions=True
        )
        proton.stopping, proton.stopped, proton.spawning = False, True, False
        proton.updated = time.time()

    def _note_proton(self, wl: Workload, proton: Proton) -> None:
        status = proton.status
        if status == "running" and proton.running_since is None:
            proton.running_since = time.time()
        key = f"{status}/{proton.role}"
        if key != proton.last_status:
            proton.last_status = key
            self.event(
                wl,
                "proton",
                status,
                {
                    "protonId": proton.id,
                    "role": proton.role,
                    "artifactId": proton.artifact_id,
                    "version": proton.label,
                },
            )

    # ---- queries ----------------------------------------------------------------------------

    def workload_proton_ids(self, wl: Workload) -> list[str]:
        """Active first, then candidate, then old protons still alive (not stopped)."""
        ids = [wl.proton_id] if wl.proton_id else []
        rep = wl.replacement
        if rep is not None:
            ids += [p for p in rep.candidate_proton_ids + rep.previous_proton_ids if p not in ids]
        return [
            p
            for p in ids
            if p in self.protons and (p == wl.proton_id or not self.protons[p].stopped)
        ]

    def workload_status(self, wl: Workload) -> str:
        """Derived from the active proton; proton-only states collapse to ``running``."""
        proton = self.protons.get(wl.proton_id or "")
        if proton is None:
            return "unknown"
        status = proton.status
        return "running" if status in ("warming", "draining") else status

    def event(self, wl: Workload, kind: str, status: str, details: dict[str, Any]) -> None:
        self.event_seq += 1
        wl.events.append(
            {
                "id": f"{self.event_seq:024x}",
                "workloadId": wl.id,
                "timestamp": iso(time.time()),
                "eventType": f"{kind}.{status}",
                "actorId": "sim-platform",
                "details": {"status": status, **details},
            }
        )

    def concurrent(self, proton_id: str) -> int:
        """Requests in flight on a proton now."""
        proton = self.protons.get(proton_id)
        return len(proton.inflight) if proton is not None else 0


__all__ = ["TICK_S", "Clock", "Engine"]
