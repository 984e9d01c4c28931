"""Locust on the stable invoke URL: tagged users, distributed recording, the Versions tab.

``probes.locustglue.glue`` is the one module of the package that imports Locust (and so
gevent, which monkey-patches sockets): import it only from a locustfile or a Locust
process. ``probes.locustglue.window`` (the live per-version view) is pure and Locust-free,
and so is this package's ``__init__``.
"""

#: ``probes load`` passes ``--header`` values to Locust in this environment variable (a JSON
#: list of ``'Name: value'``), never on its command line, which any local user can read.
HEADERS_ENV = "PROBES_LOCUST_HEADERS"

#: The request context key naming the Locust user (the caller) a sample belongs to.
CALLER_KEY = "probes_worker"
