"""Streamed answers: the probe's TTFT accuracy and CPU per streamed answer, beside a bare reader.

``python -m bench.run streams [--concurrency 100] [--duration 4] [--rounds 2]``

The target is the simulator's proton app (``python -m probes.sim.app``, its own process on
127.0.0.1) streaming OpenAI-compatible chunks: the first content chunk after
``--first-ms`` (100), then ``--tokens`` (16) chunks ``--gap-ms`` (20) apart, then
``finish_reason`` and ``[DONE]``. Its sleeps are the truth: a client's TTFT error is its
TTFT minus ``--first-ms`` (the app's own scheduling lateness included, the same for every
client). Streams are sent open-model at ``concurrency / stream length`` per second, so about
``--concurrency`` streams are in flight at once.

Clients, in ABAB rounds, each in this process (the server's CPU is another process's):

- ``probe``: ``probes.canary.run_probe`` (aiohttp transport), rows to a list;
- ``bare``: an open-model aiohttp loop that reads ``resp.content`` line by line and
  ``json.loads`` every ``data:`` line to find the first content delta (what hand-written
  Locust/aiohttp SSE readers do), no rows beyond (ttft, ok).

Reported per client: streams, CPU µs per streamed answer (``time.process_time`` over the
run / answers), TTFT error p50/p99/max (ms), answers complete.

On a shared machine the TTFT errors of ABAB rounds swing with its load (the server's and the
client's scheduling both count), so a last ``paired`` round runs both clients *at once* in
one event loop, each at half the rate: their TTFT errors are then taken under the same
conditions, answer for answer of the same moments (CPU is not separable there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from probes.canary import ProbeSettings, run_probe
from probes.records import Sample
from probes.settings import build_request
from probes.sim.protons import standalone

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def proton(first_ms: float, gap_ms: float, tokens: int) -> Iterator[str]:
    """The simulator's proton app streaming with these delays; yields its chat URL."""
    env = {"SIM_VERSION": "bench:1", "SIM_FIRST_TOKEN_MS": str(first_ms),
           "SIM_INTER_TOKEN_MS": str(gap_ms), "SIM_TOKENS": str(tokens)}  # fmt: skip
    with standalone(env) as url:
        yield f"{url}/v1/chat/completions"


async def _probe(url: str, rate: float, duration: float) -> list[tuple[float | None, bool]]:
    rows: list[Sample] = []
    spec = build_request(url, method="POST", body=json.dumps(BODY), timeout=30)
    settings = ProbeSettings(rate=rate, duration=duration, max_in_flight=1024)
    await run_probe(spec, settings, None, on_sample=rows.append)
    return [(r.ttft_ms, r.error is None) for r in rows]


def run_probe_client(url: str, rate: float, duration: float) -> list[tuple[float | None, bool]]:
    """(ttft ms, complete) per streamed answer, from the probe's rows."""
    return asyncio.run(_probe(url, rate, duration))


def _first_content(line: bytes) -> bool:
    """Whether a ``data:`` line carries a content delta (the bare reader's whole parser)."""
    if not line.startswith(b"data:"):
        return False
    data = line[5:].strip()
    if data == b"[DONE]":
        return False
    chunk = json.loads(data)
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or [])


async def _bare(url: str, rate: float, duration: float) -> list[tuple[float | None, bool]]:
    out: list[tuple[float | None, bool]] = []
    mono0 = time.monotonic()
    connector = aiohttp.TCPConnector(limit=1024)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            ttft: float | None = None
            done = False
            try:
                async with session.post(url, json=BODY) as resp:
                    async for line in resp.content:
                        if ttft is None and _first_content(line):
                            ttft = (time.perf_counter() - t0) * 1000.0
                        done = done or line.startswith(b"data: [DONE]")
            except (TimeoutError, aiohttp.ClientError):
                done = False
            out.append((ttft, done))

        tasks = set()
        for i in range(int(rate * duration)):
            delay = mono0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
    return out


def run_bare_client(url: str, rate: float, duration: float) -> list[tuple[float | None, bool]]:
    return asyncio.run(_bare(url, rate, duration))


CLIENTS = {"probe": run_probe_client, "bare": run_bare_client}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(results: list[tuple[float | None, bool]], first_ms: float) -> dict[str, Any]:
    errors = [t - first_ms for t, _ in results if t is not None]
    return {
        "streams": len(results),
        "complete": sum(ok for _, ok in results),
        "ttft_err_p50_ms": round(statistics.median(errors), 2) if errors else None,
        "ttft_err_p99_ms": round(_pct(errors, 0.99), 2) if errors else None,
        "ttft_err_max_ms": round(max(errors), 2) if errors else None,
        "ttft_below_sleep": sum(e < 0 for e in errors),
    }


def paired(url: str, rate: float, duration: float, first_ms: float) -> list[dict[str, Any]]:
    """Both clients at once in one loop, each at half the rate."""

    async def both() -> tuple[Any, Any]:
        return await asyncio.gather(_probe(url, rate / 2, duration), _bare(url, rate / 2, duration))

    probe_rows, bare_rows = asyncio.run(both())
    return [
        {"client": "probe", **_summary(probe_rows, first_ms)},
        {"client": "bare", **_summary(bare_rows, first_ms)},
    ]


def measure(name: str, url: str, rate: float, duration: float, first_ms: float) -> dict[str, Any]:
    cpu0 = time.process_time()
    results = CLIENTS[name](url, rate, duration)
    cpu = time.process_time() - cpu0
    return {
        "client": name,
        "cpu_us_per_stream": round(cpu / max(len(results), 1) * 1e6, 1),
        **_summary(results, first_ms),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench streams", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--first-ms", type=float, default=100.0)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=16)
    args, _ = parser.parse_known_args(argv)
    length_s = (args.first_ms + args.gap_ms * (args.tokens - 1)) / 1000.0
    rate = args.concurrency / length_s
    print(
        f"streams: {args.tokens} tokens, first {args.first_ms:g} ms, gap {args.gap_ms:g} ms "
        f"({length_s * 1000:g} ms a stream) at {rate:g}/s: ~{args.concurrency} concurrent; "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with proton(args.first_ms, args.gap_ms, args.tokens) as url:
        for name in CLIENTS:  # warm both paths (imports, first connections) once
            CLIENTS[name](url, 10.0, 0.3)
        for k in range(args.rounds):
            order = list(CLIENTS) if k % 2 == 0 else list(CLIENTS)[::-1]
            for name in order:
                row = measure(name, url, rate, args.duration, args.first_ms)
                print(json.dumps({"round": k + 1, **row}), flush=True)
        for row in paired(url, rate, args.duration, args.first_ms):
            print(json.dumps({"round": "paired", **row}), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
