"""The :class:`Simulator`: control plane + gateway on one aiohttp port, in its own thread.

On start it creates two locked artifacts of the proton app (``proton-app:1`` baseline and
``proton-app:2`` candidate, configured by the scenario) and one workload running the baseline,
and waits until that workload is ``running``.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from probes.errors import TargetError
from probes.sim import control, gateway
from probes.sim.engine import Engine
from probes.sim.scenarios import SimConfig

START_TIMEOUT_S = 60.0


def stream_knobs(knobs: dict[str, Any], role: str) -> tuple[str, str, int, float]:
    """A role's stream knobs (``artifact_spec``'s ``stream``) from the simulator's knobs."""
    return (
        str(knobs[f"{role}_first_token_ms"]),
        str(knobs[f"{role}_inter_token_ms"]),
        int(knobs["stream_tokens"]),
        float(knobs[f"{role}_abort_share"]),
    )


APP_NAME = "proton-app"


def artifact_spec(
    latency_ms: str,
    error_rate: float,
    reveal: str,
    *,
    startup_s: float = 0.0,
    never_ready: bool = False,
    stream: tuple[str, str, int, float] = ("0", "0", 16, 0.0),
) -> dict[str, Any]:
    """An artifact spec running the proton app with these knobs (as ``environmentVars``);
    ``stream``: first-token delay, inter-token delay, tokens and abort share of its streams."""
    first, inter, tokens, abort = stream
    env = {
        "SIM_LATENCY_MS": latency_ms,
        "SIM_ERROR_RATE": f"{error_rate:g}",
        "SIM_STARTUP_S": f"{startup_s:g}",
        "SIM_NEVER_READY": "1" if never_ready else "0",
        "SIM_REVEAL_VERSION": reveal,
        "SIM_FIRST_TOKEN_MS": first,
        "SIM_INTER_TOKEN_MS": inter,
        "SIM_TOKENS": str(tokens),
        "SIM_ABORT_SHARE": f"{abort:g}",
    }
    return {
        "containerGroups": [
            {
                "name": "default",
                "containers": [
                    {
                        "name": "main",
                        "imageUri": "proton-probe/sim-app:latest",
                        "port": 8080,
                        "primary": True,
                        "environmentVars": [
                            {"source": "string", "name": k, "value": v} for k, v in env.items()
                        ],
                        # quicker than the documented 30 s defaults, still honoured (and scaled)
                        "readinessProbe": {
                            "path": "/health",
                            "port": 8080,
                            "initialDelaySeconds": 1,
                            "periodSeconds": 1,
                            "timeoutSeconds": 5,
                            "successThreshold": 2,
                        },
                    }
                ],
            }
        ]
    }


class Simulator:
    """The embedded Workload platform. Use as a context manager (or ``start``/``stop``)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.knobs = config.knobs()
        self.base_url = ""
        self.workload_id = ""
        self.baseline_artifact_id = ""
        self.candidate_artifact_id = ""
        self.labels: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = threading.Event()

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v2"

    @property
    def invoke_url(self) -> str:
        return f"{self.base_url}/api/v2/endpoints/workloads/{self.workload_id}/"

    @property
    def cluster(self) -> Engine:
        """The platform engine (its records, router and stats); use it through ``call``."""
        assert self._engine is not None, "simulator not started"
        return self._engine

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop thread, the server, the artifacts and the workload; wait until
        the workload is running. Raises ``TargetError`` when that fails."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="probes-sim", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=START_TIMEOUT_S)
        except Exception as exc:
            self.stop()
            raise TargetError(f"simulator failed to start: {exc}") from exc

    def _thread_main(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start(ready))
            if ready.exception() is None:
                loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()
            self._stopped.set()

    async def _start(self, ready: Future[None]) -> None:
        try:
            await self._serve()
            await self._bootstrap()
            ready.set_result(None)
        except BaseException as exc:  # reported to the starting thread
            ready.set_exception(exc)

    async def _serve(self) -> None:
        k = self.knobs
        self._engine = Engine(k, self.config.time_scale, self.config.seed)
        await self._engine.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[control.ENGINE_KEY] = self._engine
        app[control.TOKEN_KEY] = self.config.token
        gateway.routes(app, self.config.token, float(k["upstream_timeout"]))
        control.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://{self.config.host}:{port}"
        self._engine.base_url = self.base_url

    async def _bootstrap(self) -> None:
        """Baseline and candidate artifacts (locked), and the workload on the baseline."""
        k, cluster = self.knobs, self.cluster
        reveal = str(k["reveal_version"])
        base = control.create_artifact(
            cluster,
            {
                "name": APP_NAME,
                "spec": artifact_spec(
                    str(k["baseline_latency_ms"]),
                    float(k["baseline_error_rate"]),
                    reveal,
                    stream=stream_knobs(k, "baseline"),
                ),
            },
        )
        control.lock(cluster, base)
        cand = control.create_artifact(
            cluster,
            {
                "name": APP_NAME,
                "spec": artifact_spec(
                    str(k["candidate_latency_ms"]),
                    float(k["candidate_error_rate"]),
                    reveal,
                    startup_s=float(k["candidate_startup_s"]),
                    never_ready=bool(k["candidate_never_ready"]),
                    stream=stream_knobs(k, "candidate"),
                ),
            },
        )
        control.lock(cluster, cand)
        self.baseline_artifact_id, self.candidate_artifact_id = base.id, cand.id
        self.labels = {base.id: base.label, cand.id: cand.label}
        wl = control.create_workload(
            cluster,
            {
                "name": f"sim-{self.config.scenario}",
                "artifactId": base.id,
                "runtime": {
                    "containerGroups": [{"name": "default", "replicaCount": int(k["replicas"])}]
                },
            },
        )
        self.workload_id = wl.id
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while cluster.workload_status(wl) != "running":
            proton = cluster.protons[wl.proton_id or ""]
            if proton.failed:
                raise RuntimeError(proton.failed)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the baseline workload did not become running")
            await asyncio.sleep(0.02)

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._engine is not None:
            await self._engine.close()

    def stop(self) -> None:
        """Stop the server and every proton process; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
        self._thread = None

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the simulator's loop and return its result (thread-safe)."""
        assert self._loop is not None
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    def proton_request_counts(self) -> dict[str, int]:
        """Requests the gateway routed to each proton (the stats endpoint's numbers)."""
        return dict(self.call(self.cluster.stats.request_counts))

    def proton_pids(self) -> list[int]:
        """Process ids of every proton replica started so far (for orphan checks)."""

        def pids() -> list[int]:
            return [
                r.proc.pid
                for p in self.cluster.protons.values()
                for r in p.replicas
                if r.proc is not None
            ]

        return list(self.call(pids))
