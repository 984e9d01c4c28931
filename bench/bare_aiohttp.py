"""The bare aiohttp open-model loop the canary bench runs beside the probe, as its own process.

``python -m bench.bare_aiohttp URL --rate R --duration S [--uvloop] [--rows FILE]``: request i
is due at ``i / R`` seconds after a monotonic start, whatever the responses; each is a task
doing ``session.get`` + ``read``; at most 256 are in flight (as the probe's default), a request
due beyond that is counted as saturated, not sent. Rows ``[intended_ts, ts, latency_ms, ok]``
(epoch seconds, ts taken when the task starts its request, as the probe's rows) go to
``--rows`` as JSON after the run; a one-line JSON summary goes to stdout.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.bare_cli import main


async def run(url: str, rate: float, duration: float, bound: int) -> tuple[list[list[float]], int]:
    rows: list[list[float]] = []
    saturated = 0
    in_flight = 0
    mono0 = time.monotonic()
    wall0 = time.time() - (time.monotonic() - mono0)
    connector = aiohttp.TCPConnector(limit=bound)
    timeout = aiohttp.ClientTimeout(total=5.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(intended: float) -> None:
            nonlocal in_flight
            ts = wall0 + (time.monotonic() - mono0)
            t0 = time.perf_counter()
            ok = 1.0
            try:
                async with session.get(url) as response:
                    await response.read()
                    ok = 1.0 if response.status == 200 else 0.0
            except (TimeoutError, aiohttp.ClientError):
                ok = 0.0
            rows.append([intended, ts, (time.perf_counter() - t0) * 1000.0, ok])
            in_flight -= 1

        tasks = set()
        for i in range(int(rate * duration)):
            delay = mono0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= bound:
                saturated += 1
                continue
            in_flight += 1
            task = asyncio.create_task(one(wall0 + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)
    return rows, saturated


if __name__ == "__main__":
    main(run, __doc__ or "")
