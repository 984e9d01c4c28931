"""A small versioned HTTP server for the Locust tests, run as its own process.

``python -m tests.locust.versioned_server [--fail-every N]`` prints ``PORT`` on stdout, then
serves on 127.0.0.1: every request is answered by version ``v1`` or ``v2`` (alternating), in
the ``X-Proton-Version`` header and the JSON body; ``/_counts`` returns what it served per
version. It exits when its stdin closes, so a dying test never leaves it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections import Counter

from aiohttp import web


def make_app(fail_every: int) -> web.Application:
    counts: Counter[str] = Counter()
    served = [0]

    async def counts_view(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    async def invoke(request: web.Request) -> web.Response:
        await request.read()
        served[0] += 1
        version = "v1" if served[0] % 2 else "v2"
        counts[version] += 1
        status = 503 if fail_every and served[0] % fail_every == 0 else 200
        body = json.dumps({"version": version, "n": served[0]})
        return web.Response(
            status=status,
            text=body,
            content_type="application/json",
            headers={"X-Proton-Version": version},
        )

    app = web.Application()
    app.router.add_get("/_counts", counts_view)
    app.router.add_route("*", "/{tail:.*}", invoke)
    return app


async def serve(fail_every: int) -> None:
    runner = web.AppRunner(make_app(fail_every), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stdin, daemon=True).start()
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-every", type=int, default=0)
    asyncio.run(serve(parser.parse_args().fail_every))
