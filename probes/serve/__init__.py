"""``probes serve``: the service that watches every configured target all the time.

Modules (the reference: docs/serve.md), top to bottom:

- ``service`` — ``Service``, the composition root: builds the parts, starts and stops them;
- ``target`` — ``TargetMonitor``, one target's canary, captures and live view, made of
  ``segments`` (rolling canary runs), ``rollout_run`` (a capture being recorded),
  ``recent`` (rollouts in memory for the verdict) and ``platform_watch`` (the control plane);
- ``scheduler``, ``jobs``, ``trends`` — schedules fired, runs in threads, series and
  regressions;
- ``context`` — ``ServeContext``, what every part is handed; ``tasks`` — background tasks;
  ``finishing`` — ``RunFinisher``: close, report and index runs;
- ``runner`` — scheduled and API-started runs through ``probes.recording`` (the only caller);
- ``http``, ``pages``, ``params``, ``ui`` — the HTTP API, the UI routes, query and body
  parsing, the pure page rendering;
- ``door`` — who may ask what: Bearer, the login form and session cookie, loopback rules;
- ``history`` — each target's recent past in time buckets (the live charts' history);
- ``health`` — a target's health at a glance, for the overview and ``/api/v1/targets``;
- ``config`` — ``serve.toml`` read once into frozen settings; every bad key named;
- ``schedule``, ``capture`` — the CronJob policy and when a capture opens and closes, pure;
- ``index``, ``metrics``, ``verdict``, ``notify`` — the run index, Prometheus metrics, the
  verdict body, webhooks.

This package never imports click, ``probes.cli``, Locust or gevent.
"""

__all__: list[str] = []  # the modules are the surface: import them by name
