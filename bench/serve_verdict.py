"""Verdict endpoint latency while 100 targets' rollout windows are live
(``python -m bench.serve_verdict``).

One asyncio loop holds the HTTP app (``probes.serve.http.make_app``) on 127.0.0.1 and 100 fake
targets, each with an open rollout whose raw samples grow at the target's capture rate
(20 samples/s each, 2,000/s in all, appended on the loop as the service's probes would).
Target ``i`` starts with ``(i + 1) * 1,000`` samples, so the windows span 1k to 100k samples.
A client thread polls ``GET /api/v1/verdict?target=...`` over one keep-alive connection,
cycling through the targets, and every answer is judged from that moment's samples.

Reported: the handler's time on the loop (a middleware's clock around it) and the client's
round trip, p50/p99/max, overall and for the 100k-sample target alone.
Goal (issue 8): p99 < 20 ms.

Options: ``--requests N`` (default 600), ``--targets N`` (default 100).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import numpy as np
from aiohttp import web

from probes.serve.http import make_app
from probes.serve.index import RunIndex
from probes.serve.metrics import Metrics
from probes.serve.verdict import no_rollout_body, verdict_body

CAPTURE_RATE = 20.0
SLOS = ("error_rate<0.01", "p99_ms<800")


@dataclass
class Window:
    """A rollout's raw samples: preallocated arrays, the first ``n`` filled."""

    versions: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    n: int
    rng: np.random.Generator

    @classmethod
    def start(cls, n: int, capacity: int, seed: int) -> Window:
        rng = np.random.default_rng(seed)
        versions = np.empty(capacity, dtype=object)
        latency = np.empty(capacity)
        ok = np.empty(capacity, dtype=bool)
        w = cls(versions, latency, ok, 0, rng)
        w.append(n)
        return w

    def append(self, k: int) -> None:
        k = min(k, self.versions.size - self.n)
        s = slice(self.n, self.n + k)
        self.versions[s] = np.where(self.rng.random(k) < 0.5, "v1", "v2")
        self.latency[s] = self.rng.lognormal(3.0, 0.4, k)
        self.ok[s] = self.rng.random(k) >= 0.002
        self.n += k


@dataclass
class BenchView:
    runs_dir: Path
    index: RunIndex
    metrics: Metrics
    windows: dict[str, Window]
    auth_token: str | None = None
    handled: list[tuple[str, float, float]] = field(default_factory=list)

    def ready(self) -> bool:
        return True

    def target_names(self) -> list[str]:
        return list(self.windows)

    def target_status(self, name: str) -> dict[str, Any]:
        return {"name": name}

    def verdict(self, target: str, candidate: str | None, baseline: str | None) -> dict[str, Any]:
        w = self.windows.get(target)
        if w is None:
            return no_rollout_body(target, time.time())
        n = w.n
        return verdict_body(
            target=target,
            run_id=f"{target}-rollout",
            baseline=baseline or "v1",
            candidate=candidate or "v2",
            versions=w.versions[:n],
            latency_ms=w.latency[:n],
            ok=w.ok[:n],
            slos=SLOS,
            updated_at=time.time(),
        )

    def start_run(self, target: str, kind: str, duration_s: float | None, args: Mapping) -> str:
        raise NotImplementedError

    def flagger_target(self, namespace: str, name: str) -> str | None:
        return None

    def open_capture(self, target: str, reason: str) -> str | None:
        return None


def _timing(view: BenchView) -> Any:
    @web.middleware
    async def timed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start, cpu = time.perf_counter(), time.thread_time()
        resp = await handler(request)
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
        view.handled.append((request.query.get("target", ""), wall, cpu))
        return resp

    return timed


async def _grow(windows: dict[str, Window], stop: asyncio.Event) -> None:
    """Every 50 ms, one new sample per target (20/s each), on the loop."""
    per_tick = max(1, round(CAPTURE_RATE * 0.05))
    while not stop.is_set():
        for w in windows.values():
            w.append(per_tick)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def _client(base: str, names: list[str], requests: int, out: list[tuple[str, float]]) -> None:
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for i in range(requests):
            name = names[i % len(names)]
            start = time.perf_counter()
            resp = client.get("/api/v1/verdict", params={"target": name})
            elapsed = time.perf_counter() - start
            if resp.status_code != 200 or resp.json()["verdict"] not in ("pass", "fail"):
                raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:200]}")
            out.append((name, elapsed))


def _stats(label: str, ms: np.ndarray) -> str:
    return (
        f"{label}: n={ms.size} p50 {np.percentile(ms, 50):.1f} ms, "
        f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms"
    )


async def _main(n_targets: int, requests: int) -> int:
    windows = {
        f"t{i:03d}": Window.start((i + 1) * 1_000, (i + 1) * 1_000 + 50_000, seed=i)
        for i in range(n_targets)
    }
    with TemporaryDirectory() as tmp:
        index = RunIndex(Path(tmp) / "index.sqlite", Path(tmp))
        view = BenchView(Path(tmp), index, Metrics("bench"), windows)
        app = make_app(view)
        app.middlewares.insert(0, _timing(view))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        stop = asyncio.Event()
        grower = asyncio.create_task(_grow(windows, stop))
        rtts: list[tuple[str, float]] = []
        names = list(windows)
        for name in names:  # warm up (imports, caches) as a running service would be
            view.verdict(name, None, None)
        thread = threading.Thread(
            target=_client, args=(f"http://127.0.0.1:{port}", names, requests, rtts)
        )
        started = time.perf_counter()
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        stop.set()
        await grower
        await runner.cleanup()
        index.close()
    biggest = names[-1]
    handled = np.array([s for _, s, _ in view.handled]) * 1e3
    cpu = np.array([c for _, _, c in view.handled]) * 1e3
    rtt = np.array([s for _, s in rtts]) * 1e3
    big = np.array([s for n, s, _ in view.handled if n == biggest]) * 1e3
    sizes = [w.n for w in windows.values()]
    print(
        f"{n_targets} targets, samples per rollout {min(sizes):,}..{max(sizes):,} "
        f"(growing {CAPTURE_RATE:g}/s each), {len(rtts)} polls in {wall:.1f} s"
    )
    print(_stats("handler on the loop", handled))
    print(_stats("handler CPU (loop) ", cpu))
    print(_stats("client round trip  ", rtt))
    if big.size:
        print(_stats(f"handler, {biggest} ({sizes[-1]:,} samples)", big))
    p99 = float(np.percentile(handled, 99))
    print(f"goal p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'} ({p99:.1f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve_verdict", description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--targets", type=int, default=100)
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.targets, args.requests))


if __name__ == "__main__":
    raise SystemExit(main())
