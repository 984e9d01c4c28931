"""The service's door over real sockets on 127.0.0.1: the login form, the session cookie,
redirects that never leave the service, logout; and with auth off, the loopback rules
(foreign Host, non-JSON and cross-origin POSTs) and malformed bodies as JSON 400s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from probes.serve.door import COOKIE, SESSION_S, Sessions, loopback_host, safe_next
from tests.serve.test_http import FakeView, hook, make_reported_run, run
from tests.serve.test_http import view as view  # the fixture

TOKEN = "door-test-token-0123456789abcdef"
HTML = {"Accept": "text/html,application/xhtml+xml"}


async def login(c: TestClient, token: str, next_path: str = "/", **headers: str) -> ClientResponse:
    resp = await c.post(
        "/login",
        data={"token": token, "next": next_path},
        allow_redirects=False,
        headers=headers,
    )
    c.session.cookie_jar.clear()  # the tests send the cookie themselves
    return resp


def _cookie_header(resp: ClientResponse) -> str:
    return "; ".join(resp.headers.getall("Set-Cookie", []))


def test_login_sets_a_strict_http_only_cookie_and_redirects_locally(view: FakeView) -> None:
    view.auth_token = TOKEN
    make_reported_run(view.runs_dir, "chat-rollout-7")

    async def go(c: TestClient) -> None:
        # a browser without auth is sent to the form, the page it asked for kept in next
        resp = await c.get("/runs?kind=rollout", headers=HTML, allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/login?next=%2Fruns%3Fkind%3Drollout"
        # the API keeps answering 401 JSON, even to a browser
        resp = await c.get("/api/v1/targets", headers=HTML, allow_redirects=False)
        assert resp.status == 401 and (await resp.json())["error"].startswith("authorization")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        # the form, and the static files, are open
        form = await c.get("/login?next=/runs")
        text = await form.text()
        assert form.status == 200 and 'name="token"' in text and 'value="/runs"' in text
        assert (await c.get("/static/live.js")).status == 200
        assert (await c.get("/healthz")).status == 200
        # a wrong token: the form again, 401, no cookie
        bad = await login(c, TOKEN + "x")
        assert bad.status == 401 and "not the service" in await bad.text()
        assert COOKIE not in _cookie_header(bad)
        assert (await login(c, "")).status == 401
        # the right one: 303 to next with the session cookie
        good = await login(c, TOKEN, "/runs?kind=rollout")
        assert good.status == 303 and good.headers["Location"] == "/runs?kind=rollout"
        cookie = _cookie_header(good)
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie and "Secure" not in cookie
        assert f"Max-Age={SESSION_S}" in cookie and TOKEN not in cookie
        value = good.cookies[COOKIE].value
        jar = {"Cookie": f"{COOKIE}={value}"}
        page = await c.get("/", headers={**HTML, **jar}, allow_redirects=False)
        assert page.status == 200 and "Log out" in await page.text()
        assert (await c.get("/api/v1/targets", headers=jar)).status == 200
        # a tampered or foreign value is no session
        for forged in (value[:-1] + ("0" if value[-1] != "0" else "1"), "1.2.3", "x"):
            resp = await c.get("/api/v1/targets", headers={"Cookie": f"{COOKIE}={forged}"})
            assert resp.status == 401, forged
        # a cross-site POST riding the cookie is refused
        resp = await c.post(
            "/api/v1/targets/chat/runs",
            data=json.dumps({"kind": "load"}),
            headers={**jar, "Origin": "https://evil.example", "Content-Type": "application/json"},
        )
        assert resp.status == 403 and view.started == []
        # logout clears the cookie and ends this session, even for a copy of it
        out = await c.post("/logout", headers=jar, allow_redirects=False)
        assert out.status == 303 and out.headers["Location"] == "/login"
        assert f'{COOKIE}=""' in _cookie_header(out) or "Max-Age=0" in _cookie_header(out)
        assert (await c.get("/api/v1/targets", headers=jar)).status == 401

    run(view, go)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/runs?kind=load", "/runs?kind=load"),
        ("/targets/chat", "/targets/chat"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_is_only_ever_a_local_path(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


def test_an_open_redirect_is_refused_over_http(view: FakeView) -> None:
    view.auth_token = TOKEN

    async def go(c: TestClient) -> None:
        for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            resp = await login(c, TOKEN, evil)
            assert resp.status == 303 and resp.headers["Location"] == "/", evil

    run(view, go)


def test_the_cookie_is_secure_behind_https(view: FakeView) -> None:
    view.auth_token = TOKEN

    async def go(c: TestClient) -> None:
        resp = await login(c, TOKEN, "/", **{"X-Forwarded-Proto": "https"})
        assert resp.status == 303 and "Secure" in _cookie_header(resp)

    run(view, go)


def test_sessions_expire_and_need_the_same_token() -> None:
    now = [1_000_000.0]
    sessions = Sessions(TOKEN, clock=lambda: now[0])
    value = sessions.issue()
    assert sessions.valid(value)
    assert not Sessions(TOKEN + "x", clock=lambda: now[0]).valid(value)
    now[0] += SESSION_S - 1
    assert sessions.valid(value)
    now[0] += 2
    assert not sessions.valid(value)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8686", True),
        ("localhost:8686", True),
        ("localhost", True),
        ("[::1]:8686", True),
        ("127.3.4.5", True),
        ("app.localhost:1", True),
        ("evil.example", False),
        ("evil.example:8686", False),
        ("10.0.0.1:8686", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, ok: bool) -> None:
    assert loopback_host(host) is ok


def test_auth_off_answers_loopback_hosts_and_json_posts_only(view: FakeView) -> None:
    async def go(c: TestClient) -> None:
        assert (await c.get("/api/v1/targets")).status == 200
        for host in ("evil.example", "evil.example:80", "192.168.1.9:8686"):
            resp = await c.get("/api/v1/targets", headers={"Host": host})
            assert resp.status == 403, host
            assert (await resp.json())["error"].startswith("Host:")
        assert (await c.get("/", headers={"Host": f"localhost:{c.port}"})).status == 200
        url = "/api/v1/targets/chat/runs"
        body = json.dumps({"kind": "observe"})
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            resp = await c.post(url, data=body, headers={"Content-Type": ctype})
            assert resp.status == 415, ctype
            assert (await resp.json())["error"].startswith("Content-Type:")
        json_ct = {"Content-Type": "application/json"}
        resp = await c.post(url, data=body, headers={**json_ct, "Origin": "http://evil.example"})
        assert resp.status == 403 and (await resp.json())["error"].startswith("Origin:")
        assert view.started == []
        same = {**json_ct, "Origin": f"http://127.0.0.1:{c.port}"}
        assert (await c.post(url, data=body, headers=same)).status == 202
        assert (await c.post(url, data=body, headers=json_ct)).status == 202
        assert len(view.started) == 2
        # Flagger posts JSON without an Origin: still answered
        flag = await c.post("/api/v1/flagger/event", data=json.dumps(hook()), headers=json_ct)
        assert flag.status == 200

    run(view, go)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    "body", ["{nope", "", "\xff", _deep(100_000), '{"kind": ' + _deep(100_000) + "}"]
)
def test_malformed_bodies_are_json_400s(view: FakeView, body: str) -> None:
    async def go(c: TestClient) -> list[Any]:
        headers = {"Content-Type": "application/json"}
        data = body.encode("latin-1") if body == "\xff" else body
        out = []
        for path in ("/api/v1/targets/chat/runs", "/api/v1/flagger/gate"):
            resp = await c.post(path, data=data, headers=headers)
            out.append((resp.status, resp.headers.get("Content-Type", ""), await resp.text()))
        return out

    (status, ctype, text), (f_status, _, f_text) = run(view, go)
    assert status == 400 and ctype.startswith("application/json")
    assert json.loads(text)["error"].startswith("body:")
    assert f_status == 400 and f_text.startswith("body:")  # Flagger: one line of text


def test_deep_json_with_auth_on_is_not_a_500(view: FakeView, tmp_path: Path) -> None:
    view.auth_token = TOKEN

    async def go(c: TestClient) -> tuple[int, int]:
        deep = _deep(100_000)
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        a = await c.post("/api/v1/targets/chat/runs", data=deep, headers=auth)
        b = await c.post("/api/v1/flagger/gate", data=deep)  # token looked for in the body
        return a.status, b.status

    assert run(view, go) == (400, 401)
