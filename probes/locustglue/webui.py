"""The Versions tab of Locust's web UI: per version share, rate, errors and latency over the
last seconds, and the control plane's rollout beside them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, request
from locust.env import Environment

from probes.lifecycle import REQUESTED, fold
from probes.live import DEFAULT_WINDOW_S, table_rows
from probes.locustglue.options import _opt
from probes.records import read_events

if TYPE_CHECKING:  # annotations only: wiring imports this module to install the UI
    from probes.locustglue.wiring import ProbesState

VERSIONS_PATH = "/probes/versions"
TAB_KEY = "versions"


def versions_payload(state: ProbesState) -> dict[str, Any]:
    """What ``/probes/versions`` returns: the window, the rollout state and the counts."""
    if not state.closed:
        state.drain_local()
    store = state.store
    window = (
        store.recent.snapshot()
        if store is not None
        else {
            "end_ts": None,
            "window_s": float(_opt(state.options, "window", DEFAULT_WINDOW_S)),
            "requests": 0,
            "versions": [],
        }
    )
    events = read_events(state.run.path) if state.run is not None else []
    # The rollout's events: the run's own markers (``load started``, a rate plan's clock) are not
    # a rollout, and a run without one shows none
    events = [e for e in events if e.get("kind") != "marker" or e.get("status") == REQUESTED]
    rollout = fold(events).as_dict() if events else None
    stats = state.environment.stats
    return {
        "window": window,
        "rollout": rollout,
        "rows": table_rows(window, rollout),
        "samples": store.received if store is not None else 0,
        "locust_requests": stats.total.num_requests if stats is not None else 0,
        "run_dir": str(state.run.path) if state.run is not None else None,
    }


def install_web_ui(environment: Environment, state: ProbesState) -> None:
    """The Versions tab (Locust's extended tabs) and its JSON endpoint."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    blueprint = Blueprint("probes", __name__)

    @blueprint.route(VERSIONS_PATH)
    def versions() -> Any:
        return jsonify(versions_payload(state))

    app = web_ui.app
    assert app is not None
    app.register_blueprint(blueprint)
    web_ui.template_args["extended_tabs"] = [{"title": "Versions", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "version", "title": "Version"},
                {"key": "role", "title": "Role / rollout"},
                {"key": "share", "title": "Traffic share"},
                {"key": "rps", "title": "Req/s"},
                {"key": "errors", "title": "Error rate"},
                {"key": "p50", "title": "p50 ms"},
                {"key": "p99", "title": "p99 ms"},
            ],
        }
    ]

    @app.after_request
    def add_versions(response: Any) -> Any:
        # The UI polls /stats/requests and shows "extended_stats" in the extended tabs.
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        try:
            data = json.loads(response.get_data())
        except ValueError:
            return response
        data["extended_stats"] = [{"key": TAB_KEY, "data": versions_payload(state)["rows"]}]
        response.set_data(json.dumps(data))
        return response
