"""``make bench`` entry: ``python -m bench.run [NAME ...] [--option value ...]``.

Runs the named benchmarks (all by default), passing the options to each.

Each benchmark is a module ``bench/<name>.py`` with ``main(argv: list[str]) -> int``; add yours
to ``BENCHMARKS``. Results are printed; BENCHMARKS.md is written by hand from a real run.
"""

from __future__ import annotations

import importlib
import sys

#: name -> module under bench/ (in the order ``make bench`` runs them).
BENCHMARKS: dict[str, str] = {
    "canary": "bench.canary",
    "gateway": "bench.gateway",
    "report": "bench.report",
    "locust": "bench.locust",
    "capacity": "bench.capacity",
    "changepoints": "bench.changepoints",
    "serve": "bench.serve",
    "serve_verdict": "bench.serve_verdict",
    "streams": "bench.streams",
    "master_ingest": "bench.master_ingest",
    "sequential": "bench.sequential",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, extra = args[:split] or list(BENCHMARKS), args[split:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"bench: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    if "-h" in extra or "--help" in extra:  # never start a benchmark to print help
        print(__doc__.strip() + "\n\nbenchmarks:")
        for name in names:
            doc = (importlib.import_module(BENCHMARKS[name]).__doc__ or "").strip()
            print(f"  {name:14} {doc.splitlines()[0] if doc else ''}")
        return 0
    code = 0
    for name in names:
        print(f"== bench {name}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        code = max(code, int(module.main(extra) or 0))
    return code


if __name__ == "__main__":
    sys.exit(main())
