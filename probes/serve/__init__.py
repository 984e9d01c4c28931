"""``probes serve``: the service that watches every configured target all the time.

Modules (the reference: docs/serve.md):

- ``config`` — ``serve.toml`` read once into frozen settings; every bad key named;
- ``schedule`` — fire times (cron via cronsim, ``every``) and the CronJob policy, pure;
- ``capture`` — when a rollout capture opens and closes, pure;
- ``runner`` — scheduled and API-started runs through ``probes.recording`` (the only caller);
- ``service`` — the asyncio ``Service``: canaries, captures, scheduler, lifecycle;
- ``index``, ``metrics``, ``verdict``, ``http`` — the run index, Prometheus metrics, the
  verdict body and the HTTP API;
- ``door`` — who may ask what: Bearer, the login form and session cookie, loopback rules;
- ``history`` — each target's recent past in time buckets (the live charts' history);
- ``health`` — a target's health at a glance, for the overview and ``/api/v1/targets``;
- ``web``, ``pages`` — the web UI's rendering and its routes.

This package never imports click, ``probes.cli``, Locust or gevent.
"""

__all__: list[str] = []  # the modules are the surface: import them by name
