"""The command line both bare loops share (``bench.bare_aiohttp``, ``bench.bare_raw``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

Loop = Callable[[str, float, float, int], Coroutine[Any, Any, tuple[list[list[float]], int]]]


def main(run: Loop, doc: str) -> None:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--rows", help="write the rows here as JSON")
    args = parser.parse_args()
    coro = run(args.url, args.rate, args.duration, args.max_in_flight)
    if args.uvloop:
        import uvloop

        rows, saturated = uvloop.run(coro)
    else:
        rows, saturated = asyncio.run(coro)
    if args.rows:
        with open(args.rows, "w") as out:
            json.dump(rows, out)
    ok = sum(1 for r in rows if r[3])
    print(json.dumps({"sent": len(rows), "ok": ok, "saturated": saturated}))
