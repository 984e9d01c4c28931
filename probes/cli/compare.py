"""``probes compare RUN_A RUN_B``: a run against a baseline run, sample by sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from probes.cli.options import option


@click.command(short_help="Compare a run with a baseline run, sample by sample.")
@click.argument("run_a", metavar="RUN_A", type=click.Path(path_type=Path))
@click.argument("run_b", metavar="RUN_B", type=click.Path(path_type=Path))
@option("--quiet", "-q", is_flag=True, help="Print only the path of the comparison JSON.")
def command(run_a: Path, run_b: Path, quiet: bool) -> dict[str, Any]:
    """Compare RUN_B (the current run) with RUN_A (the baseline) from their raw samples.

    Mann–Whitney U on latency and Fisher's exact test on errors, for the whole run, per
    version label present in both and, for capacity runs, per capacity step (plus the change
    of max_rps_within_slo and of the knee). Writes compare-<RUN_A id>.json, .md and .html into
    RUN_B, prints the JSON's path and the judgement line (better, same, worse, inconclusive).
    Exit 0 same, better or inconclusive; 1 worse; 2 RUN_A or RUN_B missing or not a run.
    """
    from reports.compare import compare_runs, judgement_line, write_comparison

    result = compare_runs(run_a, run_b)
    path = write_comparison(result, run_b)
    click.echo(str(path))
    if not quiet:
        click.echo(judgement_line(result))
        for line in (result.get("capacity") or {}).get("lines", []):
            click.echo(f"  {line}")
    return result
