"""Connection modes: ``--connections reused|new|both``, the ``conn_mode`` column, the
``connections`` block of the summary, and old runs without the column.

End to end: the simulator's ``sticky`` scenario (keep-alive pins callers to the old proton),
and a small gateway that closes idle keep-alive connections at a switch.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from probes.canary import ProbeSettings, run_probe_blocking
from probes.cli import main
from probes.errors import ConfigError
from probes.recording import ObserveSettings
from probes.records import (
    SAMPLE_COLUMNS,
    SAMPLE_SCHEMA,
    SAMPLE_SCHEMA_VERSION,
    Sample,
    ShardWriter,
    read_samples,
    samples_to_table,
    write_json_atomic,
)
from probes.settings import build_request
from probes.sim import SimConfig, Simulator
from reports.report import make_report

TOKEN = "conn-test-token"
TOKEN_ENV = "PROBES_TEST_CONN_TOKEN"


class Gateway:
    """An HTTP server on 127.0.0.1 that answers ``v1`` until its switch, ``v2`` after, and at
    the switch drops the keep-alive connections opened before it: the first request that
    arrives on one of them afterwards meets a closed connection (its transport is aborted),
    as a request races a load balancer closing an idle connection. Connections opened after
    the switch are served."""

    def __init__(self, switch_after_s: float) -> None:
        self.switch_after_s = switch_after_s
        self.first_ts: float | None = None
        self.switch_ts: float | None = None
        self.opened: dict[int, tuple[Any, float]] = {}  # id(transport) -> (it, first seen)
        self.dropped: list[float] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        if self.first_ts is None:
            self.first_ts = now
            self.switch_ts = now + self.switch_after_s
        transport = request.transport
        assert transport is not None and self.switch_ts is not None
        _, opened = self.opened.setdefault(id(transport), (transport, now))
        if now >= self.switch_ts and opened < self.switch_ts:
            self.dropped.append(now)
            transport.abort()
            raise ConnectionResetError  # nothing is answered on a dropped connection
        version = "v2" if now >= self.switch_ts else "v1"
        return web.json_response({"version": version}, headers={"X-Version": version})

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture()
def gateway() -> Iterator[Gateway]:
    g = Gateway(switch_after_s=1.0)
    yield g
    g.close()


# ------------------------------------------------------------------------------- settings


def test_connections_setting_parsed_with_its_place() -> None:
    assert ObserveSettings.build(duration=1, connections="both").probe.connections == "both"
    assert ObserveSettings.build(duration=1).probe.connections == "reused"
    from probes.settings import FLAGS

    with pytest.raises(ConfigError, match=r"^--connections: 'pooled' is not one of"):
        ObserveSettings.build(duration=1, connections="pooled", place=FLAGS)
    with pytest.raises(ConfigError, match=r"^connections: 'pooled' is not one of"):
        ObserveSettings.build(duration=1, connections="pooled")  # the library names keys
    with pytest.raises(ConfigError, match=r"^targets\[0\]\.connections: "):
        from probes.settings import Place

        ObserveSettings.build(duration=1, connections=3, place=Place.keys("targets[0]."))
    with pytest.raises(ValueError, match="connections"):
        ProbeSettings(rate=1, duration=1, connections="x")


def test_cli_bad_connections_exits_2_naming_the_flag(tmp_path: Path, capsys: Any) -> None:
    code = main(["observe", "http://127.0.0.1:1/", "--connections", "sometimes",
                 "--runs-dir", str(tmp_path), "-q"])  # fmt: skip
    assert code == 2 and "--connections" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- the probe


def test_both_interleaves_the_modes_on_one_schedule(gateway: Gateway) -> None:
    gateway.switch_after_s = 1e9  # no switch in this test
    rows: list[Any] = []
    settings = ProbeSettings(rate=40, duration=1.0, connections="both")
    stats = run_probe_blocking(build_request(gateway.url), settings, None, on_sample=rows.append)
    rows.sort(key=lambda r: r.intended_ts)
    assert len(rows) == stats.scheduled == 40 and not [r for r in rows if r.error]
    assert [r.conn_mode for r in rows] == ["reused", "new"] * 20
    new = [r.conn for r in rows if r.conn_mode == "new"]
    reused = [r.conn for r in rows if r.conn_mode == "reused"]
    assert None not in new + reused
    assert len(set(new)) == 20  # a fresh connection per request
    assert len(set(reused)) <= 3 < 20  # a pool: the same few connections again and again
    assert not set(new) & set(reused)
    # each stream at half the rate: 50 ms between a stream's requests
    reused_due = [r.intended_ts for r in rows if r.conn_mode == "reused"]
    assert reused_due[1] - reused_due[0] == pytest.approx(0.05)


# ------------------------------------------------------------------------------- old runs


def _write_v1_run(run_dir: Path, n: int = 60) -> None:
    """A run as recorded before connection modes: a shard of the 13 schema-1 columns."""
    (run_dir / "samples").mkdir(parents=True)
    t0 = 1_700_000_000.0
    rows = [
        (t0 + i * 0.1, t0 + i * 0.1, 2.0, "probe", "p@h:1", "GET", "/", 200, None,
         "v1" if i < 30 else "v2", "header", 10, f"127.0.0.1:{40000 + i % 2}")
        for i in range(n)
    ]  # fmt: skip
    later = ("conn_mode", "ttft_ms", "tokens", "itl_ms")  # columns of schemas 2 and 3
    v1_schema = pa.schema([f for f in SAMPLE_SCHEMA if f.name not in later])
    columns = list(zip(*rows, strict=True))
    table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, v1_schema, strict=True)],
        schema=v1_schema,
    )
    assert "conn_mode" not in table.column_names
    pq.write_table(table, run_dir / "samples" / "probe-000000.parquet")
    write_json_atomic(
        run_dir / "manifest.json",
        {"schema": "proton-probe/manifest/1", "run_id": "old", "kind": "observe",
         "started_ts": t0, "ended_ts": t0 + n * 0.1, "settings": {"bucket_s": 1.0}},
    )  # fmt: skip


def test_a_run_recorded_before_connection_modes_still_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    _write_v1_run(run_dir)
    frame = read_samples(run_dir)
    assert set(frame["conn_mode"].astype(str)) == {"reused"}  # the documented default
    summary = make_report(run_dir)
    c = summary["connections"]
    assert c["modes"] == ["reused"] and c["by_mode"]["reused"]["requests"] == 60
    assert c["identified"] == 2 and summary["disruption"]["count"] == 0
    assert summary["reconciliation"] is None
    assert "Connections" in (run_dir / "report.html").read_text()
    assert not (run_dir / "figures" / "connection_share.png").exists()  # reused only
    # New shards say their schema version; rows of schema 1 (an older Locust worker's
    # tuples) still make a table.
    with ShardWriter(tmp_path / "new", "probe", background=False) as writer:
        writer.add(Sample(1.0, 1.0, 1.0, "probe", "w", "GET", "/", 200, None, "v", "header", 0,
                          "127.0.0.1:1#1", "new"))  # fmt: skip
    (shard,) = (tmp_path / "new" / "samples").glob("*.parquet")
    assert pq.read_schema(shard).metadata[b"proton-probe.samples"] == b"%d" % SAMPLE_SCHEMA_VERSION
    assert SAMPLE_SCHEMA_VERSION == 3
    old_row = (1.0, 1.0, 1.0, "locust", "w", "GET", "/", 200, None, "v", "header", 0, None)
    table = samples_to_table([old_row])
    assert table.column_names == list(SAMPLE_COLUMNS)
    assert table.column("conn_mode").to_pylist() == ["reused"]


# ------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_gateway_closing_idle_keepalive_at_the_switch_errs_reused_only(
    tmp_path: Path, gateway: Gateway
) -> None:
    rate = 40
    argv = ["observe", gateway.url, "--connections", "both", "--rate", str(rate)]
    argv += ["--duration", "3", "--runs-dir", str(tmp_path), "--run-id", "gw", "-q"]
    code = main(argv)
    assert code in (0, 1)
    summary = json.loads((tmp_path / "gw" / "summary.json").read_text())
    by_mode = summary["connections"]["by_mode"]
    assert gateway.dropped, "the gateway dropped no connection"
    assert by_mode["reused"]["errors"] == len(gateway.dropped) > 0
    assert by_mode["new"]["errors"] == 0
    assert set(summary["error_classes"]) == {"reset"}
    # At the switch: every failure was sent within one interval before it to a moment after.
    frame = read_samples(tmp_path / "gw")
    failed = frame[frame["error"].notna()]
    assert set(failed["conn_mode"].astype(str)) == {"reused"}
    assert gateway.switch_ts is not None
    assert failed["ts"].min() >= gateway.switch_ts - 2 / rate
    assert failed["ts"].max() <= gateway.switch_ts + 0.5
    # The failed rows name the connection they failed on, one opened before the switch.
    assert failed["conn"].notna().all()
    listed = {c["conn"]: c for c in summary["connections"]["per_connection"]}
    for conn in failed["conn"].astype(str):
        assert listed[conn]["mode"] == "reused" and listed[conn]["failed_age_s"] > 0.5
    disruption = summary["disruption"]["by_mode"]
    assert disruption["new"]["count"] == 0 and disruption["reused"]["count"] >= 1
    assert (tmp_path / "gw" / "figures" / "connection_share.png").exists()


@pytest.mark.slow
def test_sticky_reused_connections_stay_on_the_old_proton_new_ones_switch_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    scale, rate = 60.0, 50
    config = SimConfig(scenario="sticky", time_scale=scale, token=TOKEN, port=0, seed=7)
    drain_s = 180.0 / scale  # the sticky scenario's drain bound, in real seconds
    with Simulator(config) as sim:
        code = main(
            ["observe", "--api", sim.api_url, "--workload", sim.workload_id,
             "--replace-with", sim.candidate_artifact_id, "--token-env", TOKEN_ENV,
             "--connections", "both", "--rate", str(rate), "--duration", "12", "--tail", "1.5",
             "--runs-dir", str(tmp_path), "--run-id", "sticky", "-q"]
        )  # fmt: skip
        baseline = sim.labels[sim.baseline_artifact_id]
        candidate = sim.labels[sim.candidate_artifact_id]
    assert code in (0, 1)
    run_dir = tmp_path / "sticky"
    summary = json.loads((run_dir / "summary.json").read_text())
    c = summary["connections"]
    switched = summary["rollout"]["platform"]["switched_at_s"]
    assert c["switch_ref"] == "switchedAt" and c["switch_ref_s"] == switched
    interval = 2.0 / rate  # each mode's stream runs at half the rate
    # Reused: the pool's connection kept reaching the old proton after switchedAt, for as
    # long as the simulator's drain lets it (then the old proton is retired).
    reused = c["by_mode"]["reused"]
    assert reused["pinned"] >= 1
    assert abs(c["longest_pin_s"] - drain_s) <= interval + 0.1  # + the engine's tick
    assert reused["longest_pin_s"] == c["longest_pin_s"]
    # New: no connection reached the old proton after the switch (within clock rounding).
    new = c["by_mode"]["new"]
    assert new["pinned"] == 0 or new["longest_pin_s"] <= 0.005
    frame = read_samples(run_dir)
    t0 = json.loads((run_dir / "manifest.json").read_text())["started_ts"]
    rel = frame["ts"] - t0
    new_rows = frame[frame["conn_mode"].astype(str) == "new"]
    after = new_rows[rel[new_rows.index] > switched + 0.005]
    assert set(after["version"].astype(str)) == {candidate}
    first_cand = rel[new_rows.index][new_rows["version"].astype(str) == candidate].min()
    assert first_cand <= switched + interval + 0.01
    # The pinned connection saw the old version only, and is listed with its pin.
    top = c["per_connection"][0]
    # ("unknown": a request in flight on it when the old proton was retired is an error row
    # and reveals no version; a busy machine makes that likely, a quiet one rare)
    assert top["mode"] == "reused" and set(top["versions"]) - {"unknown"} == {baseline}
    assert top["pinned_s"] == c["longest_pin_s"]
    # The report shows the pin; the per-mode figure exists.
    html = (run_dir / "report.html").read_text()
    assert "Connections" in html and "pinned callers" in html
    assert (run_dir / "figures" / "connection_share.png").exists()
