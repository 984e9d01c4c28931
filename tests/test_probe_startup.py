"""The probe's start-up costs are paid before its first request is due.

Checked by the order of events, not by wall time: a cold interpreter (a subprocess, so no
other test has imported pandas or pyarrow for it) runs the probe against a local server,
with hooks logging when each session is made, when the shard writer is warmed, and, at the
first request's launch, the probe's start-up steps and the modules imported so far. After
the run the writer's first real shard is written; it must import nothing new.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import asyncio, json, sys, tempfile
from aiohttp import web
from probes import canary
from probes.records import ShardWriter
from probes.settings import RequestSpec

log = []

def hook(name, fn):
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        log.append({"event": name})
        return result
    setattr(canary, name, wrapped)

hook("make_session", canary.make_session)
hook("make_client", canary.make_client)
hook("warm_writer", canary.warm_writer)
launch = canary._Probe._launch
at_launch = {}

def first_launch(self, client, *args):
    if not at_launch:
        at_launch.update(startup=list(self.startup), modules=sorted(sys.modules),
                         client=type(client).__name__, closed=bool(client.is_closed
                         if hasattr(client, "is_closed") else client.closed))
        log.append({"event": "first_launch"})
    return launch(self, client, *args)

canary._Probe._launch = first_launch

async def ok(request):
    return web.Response(text="ok", headers={"X-Proton-Version": "v1"})

async def main(transport, connections, run_dir):
    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    writer = ShardWriter(run_dir, "probe", background=False)
    settings = canary.ProbeSettings(rate=50, duration=0.1, transport=transport,
                                    connections=connections)
    stats = await canary.run_probe(RequestSpec(url=f"http://127.0.0.1:{port}/"), settings, writer)
    await runner.cleanup()
    return writer, stats

with tempfile.TemporaryDirectory() as run_dir:
    writer, stats = asyncio.run(main(sys.argv[1], sys.argv[2], run_dir))
    before = set(sys.modules)
    writer.close()  # the first real shard: conversion and Parquet write
    new = sorted(set(sys.modules) - before)
print(json.dumps({"log": log, "at_launch": at_launch, "new_on_first_write": new,
                  "written": writer.rows_written, "ok": stats.ok}))
"""


def _run(transport: str, connections: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, transport, connections],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out)


def test_everything_slow_happens_before_the_first_request_is_due() -> None:
    result = _run("aiohttp", "both")
    events = [e["event"] for e in result["log"]]
    # Both sessions (one per mode), then the writer's warm-up, then the first request.
    assert events == ["make_session", "make_session", "warm_writer", "first_launch"]
    at_launch = result["at_launch"]
    assert at_launch["startup"] == ["clients", "writer_warm", "mono0"]
    assert at_launch["client"] == "ClientSession" and not at_launch["closed"]
    modules = set(at_launch["modules"])
    assert {"pandas", "pyarrow", "pyarrow.parquet", "re2"} <= modules
    # The warm-up did the first conversion and write: the real one imports nothing more.
    assert result["new_on_first_write"] == []
    assert result["written"] == result["ok"] == 5


def test_the_httpx_transport_is_warmed_the_same_way() -> None:
    result = _run("httpx", "reused")
    events = [e["event"] for e in result["log"]]
    assert events == ["make_client", "warm_writer", "first_launch"]
    assert result["at_launch"]["startup"] == ["clients", "writer_warm", "mono0"]
    assert result["new_on_first_write"] == []
