"""Locust on streamed answers: a real Locust run against the simulator's proton app (its own
process on 127.0.0.1) streaming OpenAI-compatible chunks, half of them cut half-way. Every
answer is a sample with TTFT, tokens and inter-token gap; cut ones are ``stream_aborted``;
Locust's own statistics carry a ``TTFT <name>`` row; ``locust.json`` still counts requests
equal to samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.sim.protons import standalone
from tests.locust.conftest import counts, locust_samples, only_run, run_locust

pytestmark = pytest.mark.slow

FIRST_MS, GAP_MS, TOKENS = 60.0, 10.0, 6
#: Scheduling noise allowed above a sleep: wide, as the tests share a loaded machine.
MARGIN_MS = 500.0


@pytest.fixture()
def proton() -> Iterator[str]:
    env = {
        "SIM_VERSION": "m:7",
        "SIM_REVEAL_VERSION": "body",  # no header: the version is the chunks' model field
        "SIM_FIRST_TOKEN_MS": str(FIRST_MS),
        "SIM_INTER_TOKEN_MS": str(GAP_MS),
        "SIM_TOKENS": str(TOKENS),
        "SIM_ABORT_SHARE": "0.5",
        "SIM_SEED": "3",
    }
    with standalone(env) as url:
        yield url


def test_locust_records_streams_and_shows_a_ttft_row(tmp_path: Path, proton: str) -> None:
    body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "x"}]})
    run_locust(
        proton, "--headless", "-u", "2", "-r", "2", "-t", "3s", "--only-summary",
        "--json-file", str(tmp_path / "stats"), "--probes-runs-dir", str(tmp_path / "runs"),
        "--probes-method", "POST", "--probes-path", "/v1/chat/completions",
        "--probes-body", body, "--probes-tag-json", "model", cwd=tmp_path,
    )  # fmt: skip
    run_dir = only_run(tmp_path / "runs")
    samples = locust_samples(run_dir)
    entries = json.loads((tmp_path / "stats.json").read_text())
    by_method = {e["method"]: e for e in entries}
    answers, ttft = by_method["POST"], by_method["TTFT"]
    assert ttft["name"] == "TTFT /v1/chat/completions"
    # Every answer got a first token (cuts come half-way): one TTFT row entry per answer.
    assert ttft["num_requests"] == answers["num_requests"] == len(samples) > 10
    assert counts(run_dir)["requests"] == len(samples)  # the TTFT rows are not requests
    assert ttft["num_failures"] == 0
    assert set(samples["version"].astype(str)) == {"m:7"}
    assert set(samples["tag_source"].astype(str)) == {"json"}
    assert samples["ttft_ms"].min() >= FIRST_MS
    assert samples["ttft_ms"].max() < FIRST_MS + MARGIN_MS
    cut = samples[samples["error"].astype(str) == "stream_aborted"]
    whole = samples[samples["error"].isna()]
    assert len(cut) + len(whole) == len(samples) and len(cut) and len(whole)
    assert answers["num_failures"] == len(cut)
    assert set(whole["tokens"]) == {TOKENS} and set(cut["tokens"]) == {TOKENS // 2}
    # The last token's arrival (ttft + gaps) comes after every sleep.
    last = whole["ttft_ms"] + whole["itl_ms"] * (TOKENS - 1)
    assert last.min() >= FIRST_MS + GAP_MS * (TOKENS - 1)
    assert last.max() < FIRST_MS + GAP_MS * TOKENS + MARGIN_MS
    # Locust's TTFT row agrees with our samples (its stats keep about 2 significant digits).
    assert ttft["min_response_time"] == pytest.approx(samples["ttft_ms"].min(), rel=0.05)
