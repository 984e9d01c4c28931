"""The locustfile ``probes load`` runs: the package's InvokeUser and nothing else.

Kept inside the package so an installed ``probes`` finds it; ``locustfiles/invoke.py`` in
the repository is the same two lines for people running ``locust -f`` themselves.
"""

from probes.locustglue.glue import InvokeUser

__all__ = ["InvokeUser"]
