"""The service's door (docs/serve.md "The door"): who may ask what, before any handler runs.

With a token (``[serve] auth_token_env``):

- scripts send ``Authorization: Bearer <token>``; Flagger's webhooks may put it in the body's
  ``metadata.token`` (Flagger cannot send headers);
- people log in: ``GET /login`` is a form, ``POST /login`` (form field ``token``) sets a signed
  session cookie and answers 303 to ``next`` (a local path only: never an open redirect),
  ``POST /logout`` clears it. A browser asking for a page without auth is sent to the form
  (303); the API keeps answering 401 JSON with ``WWW-Authenticate: Bearer``;
- ``/healthz``, the login form and ``/static/*`` are open.

The session cookie holds ``expiry.nonce.signature``: an HMAC-SHA256 of ``expiry.nonce`` under
a key derived from the token, so nothing is stored server-side, a changed token ends every
session, and the token itself never leaves the server. HttpOnly, SameSite=Strict, and Secure
when the request came over https (or ``X-Forwarded-Proto: https`` from a proxy).

Without a token the service listens on loopback only, and the door keeps web pages the
operator visits from using it: a ``Host`` that is not a loopback name is 403 (DNS
rebinding), and a POST must be ``Content-Type: application/json`` (415 otherwise; a form or
``text/plain`` POST needs no CORS preflight) without a foreign ``Origin`` (403).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

COOKIE = "proton_probe_session"
SESSION_S = 12 * 3600
OPEN_PATHS = ("/healthz", "/login", "/logout")
LOGIN_PATH = "/login"
#: ``request[SESSION]`` is True when a person's session cookie let the request in.
SESSION: Any = web.RequestKey("session", bool) if hasattr(web, "RequestKey") else "session"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


# -- sessions ------------------------------------------------------------------------------


class Sessions:
    """Signed session values for one token (pure but for the clock and the nonce)."""

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"proton-probe session\0" + token.encode()).digest()
        self._clock = clock
        #: Sessions logged out before their expiry (value -> expiry), so a copy of the
        #: cookie stops working too; pruned as they expire.
        self._revoked: dict[str, int] = {}

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        body = f"{int(self._clock()) + SESSION_S}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def revoke(self, value: str | None) -> None:
        """Log ``value`` out (a valid session only; expired entries are dropped)."""
        now = self._clock()
        self._revoked = {v: end for v, end in self._revoked.items() if end > now}
        if value and self.valid(value):
            self._revoked[value] = int(value.partition(".")[0])

    def valid(self, value: str | None) -> bool:
        if not value or value.count(".") != 2 or value in self._revoked:
            return False
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return False
        try:
            return int(body.partition(".")[0]) > self._clock()
        except ValueError:
            return False


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this service, else ``/`` (never an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(c in value for c in "\\\r\n\t") or any(ord(c) < 32 for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def is_https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def wants_html(request: web.Request) -> bool:
    """A browser asking for a page (not the API, not a script)."""
    return (
        request.method in ("GET", "HEAD")
        and not request.path.startswith("/api/")
        and "text/html" in request.headers.get("Accept", "")
    )


# -- hosts and origins ---------------------------------------------------------------------


def loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback (``localhost``, 127/8, ::1)."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def foreign_origin(request: web.Request) -> bool:
    """An ``Origin`` header naming another site than the one asked (absent: not foreign)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return origin == "null" or parts.netloc.lower() != (request.host or "").lower()


# -- the middleware ------------------------------------------------------------------------


def door_middleware(token: str | None, flagger_token: Callable[[web.Request], Any]) -> Any:
    """The door for a service with ``token`` (None: auth off, loopback rules)."""
    if token is None:
        return _loopback_door
    sessions = Sessions(token)
    bearer = f"Bearer {token}".encode()
    secret = token.encode()

    @web.middleware
    async def door(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or path.startswith("/static/"):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(given, bearer):
            return await handler(request)
        if sessions.valid(request.cookies.get(COOKIE)):
            if request.method == "POST" and foreign_origin(request):
                return _json_error(403, "Origin: a cross-site POST is refused")
            request[SESSION] = True
            return await handler(request)
        flagger = request.method == "POST" and path.startswith("/api/v1/flagger/")
        if flagger and hmac.compare_digest(await flagger_token(request), secret):
            return await handler(request)
        if wants_html(request):
            target = urlencode({"next": safe_next(request.path_qs)})
            return _see_other(f"{LOGIN_PATH}?{target}")
        return _json_error(
            401,
            "authorization required: send 'Authorization: Bearer <token>' (people: /login)",
            **{"WWW-Authenticate": 'Bearer realm="proton-probe"'},
        )

    door.sessions = sessions  # type: ignore[attr-defined]
    return door


@web.middleware
async def _loopback_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not loopback_host(request.host):
        return _json_error(
            403, "Host: only a loopback name is answered (auth is off; set auth_token_env)"
        )
    if request.method == "POST":
        ctype = request.content_type
        if ctype != "application/json":
            return _json_error(415, f"Content-Type: {ctype!r} refused; send application/json")
        if foreign_origin(request):
            return _json_error(403, "Origin: a cross-site POST is refused")
    return await handler(request)


# -- JSON bodies ---------------------------------------------------------------------------


class BadBody(ValueError):
    """A request body that is not the JSON it should be (-> 400 naming ``body``)."""


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; BadBody for bytes that are not JSON, or JSON nested too deep
    to parse (a 100,000-deep array makes the parser recurse out)."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadBody("body: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadBody("body: not valid JSON") from None


# -- the login pages -----------------------------------------------------------------------


def login_routes(
    token: str, sessions: Sessions, render: Callable[[str, str | None], str]
) -> list[web.RouteDef]:
    """``GET /login``, ``POST /login``, ``POST /logout``; ``render(next, error)`` makes the
    form's HTML."""
    secret = token.encode()

    async def form(request: web.Request) -> web.Response:
        page = render(safe_next(request.query.get("next")), None)
        return web.Response(text=page, content_type="text/html")

    async def login(request: web.Request) -> web.StreamResponse:
        data = await request.post()
        given = data.get("token")
        target = safe_next(str(data.get("next") or "/"))
        text = given.strip() if isinstance(given, str) else ""
        if not text or not hmac.compare_digest(text.encode("utf-8", "replace"), secret):
            page = render(target, "That token is not the service's token.")
            return web.Response(text=page, content_type="text/html", status=401)
        response = _see_other(target)
        response.set_cookie(
            COOKIE,
            sessions.issue(),
            max_age=SESSION_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=is_https(request),
        )
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        sessions.revoke(request.cookies.get(COOKIE))
        response = _see_other(LOGIN_PATH)
        response.del_cookie(COOKIE, path="/")
        return response

    return [web.get(LOGIN_PATH, form), web.post(LOGIN_PATH, login), web.post("/logout", logout)]
