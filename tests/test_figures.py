"""reports.figures: drawn without pyplot, margins that fit their labels, and a report page
that does not load matplotlib."""

from __future__ import annotations

import io
import subprocess
import sys

from PIL import Image

from reports.figures import FIGURE_NAMES, _legend, _new, _place, _plain_log_ticks, _png
from reports.render import FIGURE_TITLES
from tests.test_reports_report import write_run


def test_the_page_knows_every_figure_in_order() -> None:
    assert tuple(FIGURE_TITLES) == FIGURE_NAMES


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_rendering_a_page_does_not_import_matplotlib() -> None:
    modules = _modules_after("import reports.render")
    assert "matplotlib" not in modules


def test_a_report_with_figures_never_imports_pyplot(tmp_path) -> None:
    run_dir = write_run(tmp_path)
    modules = _modules_after(f"from reports import make_report; make_report({str(run_dir)!r})")
    assert "matplotlib" in modules and "matplotlib.pyplot" not in modules
    png = (run_dir / "figures" / "latency_cdf.png").read_bytes()
    assert Image.open(io.BytesIO(png)).mode == "RGB"


def test_fixed_margins_fit_long_tick_labels_and_the_legend() -> None:
    """_place replaces constrained layout: nothing it leaves room for may fall outside."""
    fig, ax = _new("A title", "latency (ms)")
    for i in range(7):  # timeouts: p99 of tens of seconds
        ax.plot([0, 1], [0.5, 9_000 * (i + 1)], label=f"version {i} p99")
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)  # labels up to "50000"
    _place(fig, [ax], _legend(fig, ax))
    image = Image.open(io.BytesIO(_png(fig)))
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width, height = image.size
    lo, hi = ax.get_ylim()
    ticks = [t for v, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True) if lo <= v <= hi]
    assert "50000" in [t.get_text() for t in ticks]
    texts = [*ticks, ax.yaxis.label, ax.xaxis.label, ax.title, *fig.legends[0].get_texts()]
    for text in texts:
        if not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0, text.get_text()
        assert box.x1 <= width and box.y1 <= height, text.get_text()
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.y1 <= ax.xaxis.label.get_window_extent(renderer).y0  # below the x label
