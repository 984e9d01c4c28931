"""Locust on the stable invoke URL: tagged users, distributed recording, the Versions tab.

This package's modules are the only ones that import Locust (and so gevent, which
monkey-patches sockets): import them only from a locustfile or a Locust process, through
``probes.locustglue.glue`` (the entry point that registers the listeners). This
``__init__`` is Locust-free: ``probes.recording.locustproc`` reads its constants to start
Locust as a subprocess. By concept: ``options`` (the ``--probes-*`` options), ``recorder``
(a request → a sample row), ``wiring`` (local/worker/master roles, the run directory),
``shapes``, ``webui`` (the Versions tab), ``user`` (``InvokeUser``).
"""

#: ``probes load`` passes ``--header`` values to Locust in this environment variable (a JSON
#: list of ``'Name: value'``), never on its command line, which any local user can read.
HEADERS_ENV = "PROBES_LOCUST_HEADERS"

#: ... and the request body (base64), which may be large or carry what ps must not show.
BODY_ENV = "PROBES_LOCUST_BODY"

#: The request context key naming the Locust user (the caller) a sample belongs to.
CALLER_KEY = "probes_worker"

#: The request context key of an open-model request's due time (its ``intended_ts``).
INTENDED_KEY = "probes_intended_ts"
