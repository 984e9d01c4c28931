"""The recorder on streamed answers (synthetic request events): the stream columns, the
version from the first event, ``stream_aborted``, and no sample for the TTFT row's event."""

from __future__ import annotations

from probes.locustglue import glue
from probes.locustglue.recorder import STREAM_ATTR, TTFT_REQUEST_TYPE, StreamAborted
from probes.records import SAMPLE_COLUMNS
from probes.streaming import StreamFigures
from probes.tagging import TagRules
from tests.locust.test_glue_events import FakeResponse, fire_kwargs

FIRST = '{"object": "chat.completion.chunk", "model": "m:9", "choices": []}'


def streamed(figures: StreamFigures) -> FakeResponse:
    response = FakeResponse(200, {"Content-Type": "text/event-stream"}, b"data: ...")
    setattr(response, STREAM_ATTR, figures)
    return response


def test_stream_rows_carry_figures_version_and_abort() -> None:
    rows: list[tuple] = []
    recorder = glue.Recorder(rows.append, "w1", TagRules.build((), ("model",), None))
    whole = StreamFigures(81.5, 6, 10.25, True, FIRST)
    cut = StreamFigures(90.0, 3, 11.0, False, FIRST)
    recorder.on_request(**fire_kwargs(streamed(whole)))
    recorder.on_request(**fire_kwargs(streamed(cut), StreamAborted("cut")))
    recorder.on_request(**fire_kwargs(None, request_type=TTFT_REQUEST_TYPE, response_time=81.5))
    recorder.on_request(**fire_kwargs(FakeResponse(200, {}, b'{"model": "m:1"}')))
    assert len(rows) == 3  # the TTFT event is Locust's statistics row, not a request
    got = [dict(zip(SAMPLE_COLUMNS, r, strict=True)) for r in rows]
    pick = ("error", "version", "tag_source", "ttft_ms", "tokens", "itl_ms")
    assert [tuple(g[k] for k in pick) for g in got] == [
        (None, "m:9", "json", 81.5, 6, 10.25),
        ("stream_aborted", "m:9", "json", 90.0, 3, 11.0),
        (None, "m:1", "json", None, None, None),
    ]
