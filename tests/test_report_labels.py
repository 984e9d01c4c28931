"""The report says which rollout numbers are sample times, bucket times or durations, and
lists disruption intervals one per row (not one long paragraph)."""

from __future__ import annotations

import json
from pathlib import Path

from reports.render import render_html

GOLDEN = Path(__file__).parent / "data" / "golden-atomic.json"


def test_rollout_times_say_where_they_come_from_and_intervals_are_rows() -> None:
    summary = json.loads(GOLDEN.read_text())
    summary["disruption"] = {
        "count": 2, "total_s": 1.5, "longest_s": 1.0, "by_mode": {},
        "intervals": [
            {"start_s": 3.0, "end_s": 3.5, "duration_s": 0.5, "failures": 4},
            {"start_s": 12.25, "end_s": 13.25, "duration_s": 1.0, "failures": 9},
        ],
    }  # fmt: skip
    page = render_html(summary, {})
    assert "half switched (s, interpolated between 1 s bucket midpoints)" in page
    assert "first candidate answer (s, a sample&#x27;s send time)" in page
    assert "mixed window: 1 s buckets in which both answered (s)" in page
    assert "<td>12.25</td><td>13.25</td><td>1</td><td>9</td>" in page
    assert "<td>3</td><td>3.5</td><td>0.5</td><td>4</td>" in page
    # times come before durations
    assert page.index("last baseline answer") < page.index("cutover: last baseline")
