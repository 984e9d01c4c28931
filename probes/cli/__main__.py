"""``python -m probes.cli``: the ``probes`` command without the console script."""

from probes.cli import main

main()
