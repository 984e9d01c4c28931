"""``probes serve``: the service that watches every configured target all the time.

Modules (DESIGN.md "The service"):

- ``config`` — ``serve.toml`` read once into frozen settings; every bad key named;
- ``schedule`` — fire times (cron via cronsim, ``every``) and the CronJob policy, pure;
- ``capture`` — when a rollout capture opens and closes, pure;
- ``runner`` — scheduled and API-started runs through ``probes.recording`` (the only caller);
- ``service`` — the asyncio ``Service``: canaries, captures, scheduler, lifecycle;
- ``index``, ``metrics``, ``verdict``, ``http`` — the run index, Prometheus metrics, the
  verdict body and the HTTP API.

This package never imports click, ``probes.cli``, Locust or gevent.
"""

__all__: list[str] = []  # the modules are the surface: import them by name
