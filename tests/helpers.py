"""Shared test helpers: a version-revealing HTTP server on 127.0.0.1, in its own process.

``VersionServer`` starts ``python -m tests.helpers`` (aiohttp.web) on an ephemeral port and
stops it on exit. It runs in a separate process so it is safe in tests that monkey-patch
sockets (gevent/Locust) and does not share the GIL with the client under test.

What it can do (all decided by the pure ``choose`` function, table-tested):

- ``switch_at``: epoch seconds; requests *received* at or after it are answered by ``v2``,
  before it by ``v1`` (a v1 -> v2 switch at a known instant);
- ``v2_share``: before the switch, this fraction of requests goes to ``v2``, spread
  deterministically by arrival order (0.1 -> exactly every 10th request);
- ``error_share``: ``{version: fraction}`` — that share of the version's requests answers 500,
  spread deterministically over its own requests;
- ``delay_s``: ``{version: seconds}`` added before answering;
- ``stall``: ``(start_ts, end_ts)`` — requests received in the window are held until its end.

``POST /__switch`` (``VersionServer.switch_now()``) moves the switch to the moment it is
received: a test waits for a condition (a run open), then switches, instead of guessing how
long a busy machine takes to get there.

Responses carry ``X-Proton-Version: LABEL`` (unless ``header=False``) and the JSON body
``{"version": LABEL, "n": arrival_number}``. ``GET /__stats`` returns the per-version counts.

Use it as a context manager or through the ``version_server`` fixture in ``conftest.py``::

    with VersionServer(switch_at=time.time() + 2) as srv:
        probes.cli.main(["observe", srv.url, ...])
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerConfig:
    """What the test server answers; plain data so it crosses the process boundary."""

    v1: str = "v1"
    v2: str = "v2"
    switch_at: float | None = None
    v2_share: float = 0.0
    error_share: dict[str, float] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)
    stall: tuple[float, float] | None = None
    header: bool = True


def spread(n: int, share: float) -> bool:
    """Whether the ``n``-th (0-based) item of a stream gets a property given to ``share`` of
    them, spread evenly: exactly ``floor((n+1)*share)`` of the first ``n+1`` items have it."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return math.floor((n + 1) * share + 1e-9) > math.floor(n * share + 1e-9)


def choose(
    config: ServerConfig, now: float, n: int, per_version: dict[str, int]
) -> tuple[str, int]:
    """``(version, status)`` for the ``n``-th request received at ``now``.

    ``per_version`` counts the requests each version has answered so far (updated here).
    """
    if config.switch_at is not None and now >= config.switch_at:
        version = config.v2
    else:
        version = config.v2 if spread(n, config.v2_share) else config.v1
    k = per_version.get(version, 0)
    per_version[version] = k + 1
    failing = spread(k, config.error_share.get(version, 0.0))
    return version, 500 if failing else 200


def _serve(config: ServerConfig, port: int = 0) -> None:  # pragma: no cover - child process
    import asyncio

    from aiohttp import web

    state: dict[str, Any] = {"n": 0, "config": config}
    per_version: dict[str, int] = {}
    answered: dict[str, dict[str, int]] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        now = time.time()
        n = state["n"]
        state["n"] = n + 1
        version, status = choose(state["config"], now, n, per_version)
        counts = answered.setdefault(version, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        if config.stall and config.stall[0] <= now < config.stall[1]:
            await asyncio.sleep(config.stall[1] - now)
        delay = config.delay_s.get(version, 0.0)
        if delay:
            await asyncio.sleep(delay)
        headers = {"X-Proton-Version": version} if config.header else {}
        body = json.dumps({"version": version, "n": n})
        return web.Response(
            text=body, status=status, headers=headers, content_type="application/json"
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": state["n"], "answered": answered})

    async def switch(_: web.Request) -> web.Response:
        from dataclasses import replace

        state["config"] = replace(state["config"], switch_at=time.time())
        return web.json_response({"switch_at": state["config"].switch_at})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/__stats", stats)
        app.router.add_post("/__switch", switch)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
        # Stop when the parent goes away (stdin closes), so no server outlives its test.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


class VersionServer:
    """The test server in a child process; ``url`` is ``http://127.0.0.1:PORT/``."""

    def __init__(self, **config: Any) -> None:
        self.config = ServerConfig(**config)
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> VersionServer:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers", json.dumps(asdict(self.config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child prints its port once listening
        if not line:
            self.stop()
            raise RuntimeError("test server did not start")
        self.port = int(json.loads(line)["port"])
        return self

    def stats(self) -> dict[str, Any]:
        """Per-version answer counts as the server saw them."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}__stats", timeout=5) as resp:  # 127.0.0.1 only
            return dict(json.loads(resp.read()))

    def switch_now(self) -> float:
        """Send every request received from now on to ``v2``; the switch's epoch seconds."""
        import urllib.request

        req = urllib.request.Request(f"{self.url}__switch", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as resp:  # 127.0.0.1 only
            return float(json.loads(resp.read())["switch_at"])

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> VersionServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound once, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":  # pragma: no cover - the child process
    raw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if raw.get("stall"):
        raw["stall"] = tuple(raw["stall"])
    _serve(ServerConfig(**raw))
