"""A test target whose latency grows with concurrency: ``python -m tests.capacity_server``.

aiohttp on 127.0.0.1 (port 0); every request waits for one of ``--slots`` slots (an asyncio
semaphore), holds it for its service time and answers ``{"version": "v1"}`` with
``X-Proton-Version: v1``. The service time is ``--work-ms``, times ``1 + κ·n·(n−1)`` with
``--kappa κ`` where ``n`` is the number of requests the server holds when this one arrives
(itself included; a crowd that costs every request more, as lock or cache coherency does).

- ``--kappa 0`` (default): throughput is capped at ``slots / work`` (2 / 20 ms = 100 req/s)
  and, past that, closed-model latency grows linearly with the users (a plateau);
- ``--kappa κ`` with many slots: ``N`` closed-model users get ``N / (work·(1 + κN(N−1)))``,
  the Universal Scalability Law with σ = 0, peaking at ``N* = 1/√κ`` users (retrograde).

It prints ``PORT <n>`` on stdout once it listens, and stops on SIGTERM or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


def make_app(slots: int, work_s: float, kappa: float = 0.0) -> web.Application:
    gate = asyncio.Semaphore(slots)
    held = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal held
        held += 1
        try:
            crowd = 1.0 + kappa * held * (held - 1)
            async with gate:
                await asyncio.sleep(work_s * crowd)
        finally:
            held -= 1
        return web.json_response({"version": "v1"}, headers={"X-Proton-Version": "v1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(slots: int, work_s: float, max_seconds: float, kappa: float = 0.0) -> None:
    runner = web.AppRunner(make_app(slots, work_s, kappa), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.sleep(max_seconds)
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def capacity_server(
    slots: int = 2, work_ms: float = 20.0, max_seconds: float = 120.0, kappa: float = 0.0
) -> Iterator[str]:
    """Start the server in a subprocess; yield its URL; stop it."""
    cmd = [sys.executable, "-m", "tests.capacity_server", "--slots", str(slots)]
    cmd += ["--work-ms", str(work_ms), "--max-seconds", str(max_seconds), "--kappa", str(kappa)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"capacity server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--kappa", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.slots, args.work_ms / 1000.0, args.max_seconds, args.kappa))


if __name__ == "__main__":
    main()
