"""The web UI's routes: each page fetches its JSON twin (the same data ``/api/v1`` answers,
from memory or the run index's read side, never blocking the loop) and renders it with
``probes.serve.ui.render``. Static assets are vendored (``ui.STATIC_DIR``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from probes.run import read_summary
from probes.serve import ui
from probes.serve.door import SESSION
from probes.serve.health import target_item, target_items
from probes.serve.index import inside
from probes.serve.params import BadParam, run_filters

#: Rows the Rollouts page lists (newest first).
ROLLOUTS_SHOWN = 200


#: Where ``base.html`` leaves room for the logout button (shown to a logged-in person only).
LOGOUT_MARK = "<!--logout-->"
LOGOUT_FORM = (
    '<form class="logout" method="post" action="/logout"><button type="submit">Log out</button>'
    "</form>"
)


def _html(text: str, request: web.Request | None = None) -> web.Response:
    if request is not None and request.get(SESSION):
        text = text.replace(LOGOUT_MARK, LOGOUT_FORM, 1)
    return web.Response(text=text, content_type="text/html")


def login_page(next_path: str, error: str | None) -> str:
    """The login form (``GET /login``, and again after a wrong token)."""
    template = ui._environment().get_template("login.html")
    return str(template.render(css=ui._css(), base="", next=next_path, error=error))


def _files(run_dir: Path) -> list[str]:
    """The run directory's files (relative names), for the Run page."""
    if not run_dir.is_dir():
        return []
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def run_file(run_dir: Path, name: str) -> Path | None:
    """``RUN_DIR/name`` when it is a file inside the run directory (no ``..``, no symlink
    out of it), else None."""
    root = run_dir.resolve()
    try:
        path = (run_dir / name).resolve()
    except (OSError, RuntimeError):
        return None
    return path if root in path.parents and path.is_file() else None


def _open_run(item: dict[str, Any]) -> dict[str, Any]:
    """The Run page's data of a run not reported yet: its index row, marked open."""
    return {
        "kind": item["kind"],
        "started_at": item["started_at"],
        "ended_at": item["ended_at"],
        "open": item["ended_at"] is None,
        "unreported": True,
    }


def run_summary(runs_dir: Path, run_dir: Path) -> dict[str, Any] | None:
    """A run's summary.json, unless its directory is a link out of runs_dir (the service
    never follows one: it could point at another service's runs, or ``/``)."""
    return read_summary(run_dir) if inside(runs_dir, run_dir / "summary.json") else None


def _run_file(runs_dir: Path, run_dir: Path, name: str) -> Path | None:
    """``run_file``, never through a symlink out of runs_dir (the run directory itself)."""
    path = run_file(run_dir, name)
    return path if path is not None and inside(runs_dir, path) else None


def _rollouts(view: Any) -> list[dict[str, Any]]:
    rows = view.index.query(kind="rollout", limit=ROLLOUTS_SHOWN)
    return [ui.rollout_item(r.as_api(), read_summary(view.runs_dir / r.run_id)) for r in rows]


async def target_data(
    request: web.Request, view: Any, name: str, off_loop: Callable[..., Any], recent: int
) -> dict[str, Any]:
    """The Target page's data, its JSON twin: the target's status, its recent runs and, where
    the view knows them, its schedules and trends."""
    data = target_item(view, name)
    rows = await off_loop(request, view.index.query, target=name, limit=recent)
    data["recent_runs"] = [r.as_api() for r in rows]
    schedules = getattr(view, "schedule_status", None)
    if schedules is not None:
        data["schedules"] = schedules(name)
    trends = getattr(view, "target_trends", None)
    if trends is not None:
        data["trends"] = await off_loop(request, trends, name)
    return data


async def trends_data(
    request: web.Request, view: Any, off_loop: Callable[..., Any]
) -> dict[str, Any]:
    """The Trends page's data (``?target=NAME`` or ``?schedule=NAME``), its JSON twin."""
    scope = "schedule" if "schedule" in request.query else "target"
    name = request.query.get(scope) or next(iter(view.target_names()), "")
    series_of = getattr(view, f"{scope}_trends", None)
    series = await off_loop(request, series_of, name) if series_of and name else []
    return {"scope": scope, "name": name, "series": series}


def routes(
    view_of: Callable[[web.Request], Any],
    off_loop: Callable[..., Any],
    run_dir_of: Callable[[web.Request], Path | None],
    recent_runs: int,
) -> list[web.AbstractRouteDef]:
    """The UI's routes, given how the HTTP layer finds the view, runs blocking reads off the
    loop, and maps a request's ``run_id`` to its directory (None when it is not a run id)."""

    async def targets(request: web.Request) -> web.Response:
        view = view_of(request)
        data = target_items(view)
        return _html(ui.render("targets", data), request)

    async def target(request: web.Request) -> web.Response:
        view, name = view_of(request), request.match_info["name"]
        if name not in view.target_names():
            raise web.HTTPNotFound(text=f"target: unknown {name!r}")
        data = await target_data(request, view, name, off_loop, recent_runs)
        return _html(ui.render("target", data), request)

    async def runs(request: web.Request) -> web.Response:
        try:
            filters = run_filters(request.query)
        except BadParam as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        rows = await off_loop(request, view_of(request).index.query, **filters)
        data = [r.as_api() for r in rows]
        return _html(ui.render("runs", data, query=dict(request.query)), request)

    async def run(request: web.Request) -> web.Response:
        run_dir = run_dir_of(request)
        runs_dir = view_of(request).runs_dir
        summary = (
            None if run_dir is None else await off_loop(request, run_summary, runs_dir, run_dir)
        )
        if run_dir is None:
            raise web.HTTPNotFound(text=f"run: no report for {request.match_info['run_id']!r}")
        row = await off_loop(request, view_of(request).index.get, run_dir.name)
        if summary is None:
            if row is None:
                raise web.HTTPNotFound(text=f"run: no report for {run_dir.name!r}")
            # an open run (a canary segment, a capture, a job) is linked from every list:
            # its page says what is known and that the report comes when it closes
            summary = {**_open_run(row.as_api()), "run_id": run_dir.name}
        files = await off_loop(request, _files, run_dir)
        figures = [f for f in files if f.startswith("figures/") and f.endswith((".png", ".svg"))]
        extra = {"row": row.as_api() if row is not None else None, "files": files}
        extra["figures"] = figures
        return _html(ui.render("run", summary, extra=extra), request)

    async def file(request: web.Request) -> web.StreamResponse:
        run_dir, name = run_dir_of(request), request.match_info["path"]
        runs_dir = view_of(request).runs_dir
        path = (
            None if run_dir is None else await off_loop(request, _run_file, runs_dir, run_dir, name)
        )
        if path is None:
            raise web.HTTPNotFound(text=f"run: no file {name!r}")
        return web.FileResponse(path)

    async def rollouts(request: web.Request) -> web.Response:
        data = await off_loop(request, _rollouts, view_of(request))
        return _html(ui.render("rollouts", data), request)

    async def rollouts_json(request: web.Request) -> web.Response:
        return web.json_response(await off_loop(request, _rollouts, view_of(request)))

    async def trends(request: web.Request) -> web.Response:
        data = await trends_data(request, view_of(request), off_loop)
        return _html(ui.render("trends", data), request)

    async def trends_json(request: web.Request) -> web.Response:
        return web.json_response(await trends_data(request, view_of(request), off_loop))

    return [
        web.get(ui.PATHS["targets"], targets),
        web.get(ui.PATHS["target"], target),
        web.get(ui.PATHS["runs"], runs),
        web.get(ui.PATHS["run"], run),
        web.get(ui.PATHS["run"] + "/files/{path:.+}", file),
        web.get(ui.PATHS["rollouts"], rollouts),
        web.get(ui.PATHS["trends"], trends),
        web.get(ui.TWINS["rollouts"], rollouts_json),
        web.get(ui.TWINS["trends"], trends_json),
        web.static("/static", ui.STATIC_DIR),
    ]
