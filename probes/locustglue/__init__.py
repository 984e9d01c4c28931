"""Locust on the stable invoke URL: tagged users, distributed recording, the Versions tab.

``probes.locustglue.glue`` is the one module of the package that imports Locust (and so
gevent, which monkey-patches sockets): import it only from a locustfile or a Locust
process. ``probes.locustglue.window`` (the live per-version view) is pure and Locust-free,
and so is this package's ``__init__``.
"""
