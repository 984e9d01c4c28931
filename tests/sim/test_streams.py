"""The simulator's streamed chat answers: decoded by the real ``openai`` client, and measured by
the canary probe through the invoke gateway with the proton's delays as the truth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from probes.canary import ProbeSettings, run_probe
from probes.errors import ConfigError
from probes.records import Sample
from probes.settings import build_request
from probes.sim import SCENARIOS, SimConfig, Simulator
from probes.sim.app import AppConfig
from tests.sim.conftest import AUTH, TOKEN, make_sim

FIRST_MS, GAP_MS, TOKENS = 60.0, 10.0, 6
#: Scheduling noise allowed above a sleep: wide, as the tests share a loaded machine.
MARGIN_MS = 400.0


@pytest.fixture(scope="module")
def stream_sim() -> Iterator[Simulator]:
    with make_sim(
        scenario="healthy",
        baseline_first_token_ms=str(FIRST_MS),
        baseline_inter_token_ms=str(GAP_MS),
        stream_tokens=TOKENS,
        baseline_abort_share=0.5,
    ) as s:
        yield s


def test_the_openai_client_decodes_the_simulators_stream_and_answer(stream_sim: Simulator) -> None:
    client = openai.OpenAI(base_url=stream_sim.invoke_url + "v1", api_key=TOKEN, max_retries=0)
    messages = [{"role": "user", "content": "hi there"}]
    whole = client.chat.completions.create(model="any", messages=messages)  # type: ignore[arg-type]
    assert whole.model == "proton-app:1"
    assert whole.choices[0].message.content == "echo: hi there"
    # Half the streams are cut (abort share 0.5): read until one arrives whole.
    for _ in range(20):
        texts, models, finishes = [], set(), []
        try:
            stream = client.chat.completions.create(
                model="any",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            for chunk in stream:
                models.add(chunk.model)
                for choice in chunk.choices:
                    texts.append(choice.delta.content or "")
                    finishes.append(choice.finish_reason)
        except (openai.APIError, httpx.HTTPError):
            continue  # a cut stream: the client sees the broken connection
        break
    else:
        pytest.fail("no whole stream in 20")
    assert "".join(texts) == "".join(f"tok{i} " for i in range(TOKENS))
    assert models == {"proton-app:1"}
    assert finishes[-1] == "stop" and finishes[:-1] == [None] * (TOKENS + 1)  # + the role chunk


def test_the_probe_measures_the_protons_delays_and_cut_streams(stream_sim: Simulator) -> None:
    async def go() -> list[Sample]:
        rows: list[Sample] = []
        spec = build_request(
            stream_sim.invoke_url + "v1/chat/completions",
            method="POST",
            body=json.dumps({"stream": True, "messages": [{"role": "user", "content": "x"}]}),
            headers=[f"Authorization: {AUTH['Authorization']}"],
            tag_headers=["X-Nothing"],  # the version must come from the first event
            tag_json=["model"],
        )
        await run_probe(spec, ProbeSettings(rate=20, duration=1.0), None, on_sample=rows.append)
        return rows

    rows = asyncio.run(go())
    assert len(rows) == 20
    whole = [r for r in rows if r.error is None]
    cut = [r for r in rows if r.error == "stream_aborted"]
    assert len(whole) + len(cut) == 20 and whole and cut
    for row in rows:
        assert (row.status, row.version, row.tag_source) == (200, "proton-app:1", "json")
        assert row.ttft_ms is not None and FIRST_MS <= row.ttft_ms < FIRST_MS + MARGIN_MS
    assert {r.tokens for r in whole} == {TOKENS} and {r.tokens for r in cut} == {TOKENS // 2}
    for row in whole:
        assert row.itl_ms is not None and row.ttft_ms is not None
        # The last token's arrival (ttft + gaps) comes after every sleep.
        last = row.ttft_ms + row.itl_ms * (TOKENS - 1)
        assert FIRST_MS + GAP_MS * (TOKENS - 1) <= last < FIRST_MS + GAP_MS * TOKENS + MARGIN_MS
        assert row.latency_ms >= FIRST_MS + GAP_MS * (TOKENS - 1)


def test_stream_knobs_and_scenarios_are_validated() -> None:
    assert SCENARIOS["cut-streams"]["candidate_abort_share"] == 0.3
    slow = SimConfig(scenario="slow-first-token", token="t").knobs()
    assert (slow["candidate_first_token_ms"], slow["baseline_first_token_ms"]) == (
        "165-175",
        "18-22",
    )
    for kw, flag in (
        ({"stream_tokens": 0}, "--stream-tokens"),
        ({"candidate_abort_share": 1.5}, "--candidate-abort-share"),
        ({"baseline_first_token_ms": "soon"}, "--baseline-first-token-ms"),
        ({"candidate_inter_token_ms": "-1"}, "--candidate-inter-token-ms"),
    ):
        with pytest.raises(ConfigError, match=flag):
            SimConfig(token="t", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SIM_TOKENS"):
        AppConfig.from_env({"SIM_TOKENS": "0"})
    with pytest.raises(ValueError, match="SIM_ABORT_SHARE"):
        AppConfig.from_env({"SIM_ABORT_SHARE": "2"})
