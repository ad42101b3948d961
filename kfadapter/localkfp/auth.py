"""Optional access control of the embedded KFP server: a bearer token, or a Dex-like login.

- token: every call needs `Authorization: Bearer TOKEN`; otherwise 401 with KFP's JSON body.
- dex: an unauthenticated call is redirected (302) to a login form at
  /dex/auth/local/login?back=PATH; POSTing the right `login` and `password` sets the
  `authservice_session` cookie and redirects (303) back; calls then need that cookie.
  Wrong credentials show the form again with 401. Sessions live in memory; with a session
  lifetime (session_ttl seconds) an older session is no longer accepted: the call is
  treated as unauthenticated (the same redirect), as when a Kubeflow session expires.
- the web UI under a token: a browser cannot send a bearer header when it navigates, so
  a UI page (/, /pipeline/) also takes `?token=TOKEN`, and /login has a form for it
  (Jupyter's way); either sets the HttpOnly, SameSite=Strict cookie
  `local_kfp_ui_session-<port>` (a random session id, never the token) and redirects to the
  page without the token; the API then accepts that cookie as well as the header. A page
  without either redirects (302) to /login; a wrong token shows the form again with 401; an
  API call without either is a 401 JSON answer, as before.
Every path is protected except the login forms and healthz. healthz stays open on purpose:
kfp.Client() calls it while it is being constructed (retrying 5 times, 5 s apart, on
failure), so an unauthenticated client gets its 401/302 at once on its first real call
instead of a 25 s time-out; it tells nothing about the pipelines. (A Kubeflow deployment
behind Dex protects healthz too.)
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from flask import Flask, Response, jsonify, redirect, request

from kfadapter.localkfp.apierrors import ApiError

SESSION_COOKIE = "authservice_session"
LOGIN_PATH = "/dex/auth/local/login"
UI_SESSION_COOKIE = "local_kfp_ui_session"
"""The UI session cookie's name, followed by `-<port>`: cookies are per host, not per port,
so two servers on one host (as Jupyter's) keep one each."""
TOKEN_LOGIN_PATH = "/login"
UI_PAGES = frozenset({"/", "/pipeline", "/pipeline/"})
"""The paths a browser navigates to for the web UI (its pages are hash routes)."""
OPEN_PATHS = (
    "/apis/v2beta1/healthz",
    "/pipeline/apis/v2beta1/healthz",
    "/apis/v1beta1/healthz",
    "/pipeline/apis/v1beta1/healthz",
)


@dataclass
class AuthConfig:
    """Which access control is on: none, a bearer token, or Dex emulation."""

    token: str | None = None
    dex_user: str | None = None
    dex_password: str | None = None
    session_ttl: float | None = None
    _sessions: dict[str, float] = field(default_factory=dict, repr=False)
    _logins: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.session_ttl is not None and not self.session_ttl > 0:
            raise ValueError("the Dex session lifetime must be a positive number of seconds")

    @property
    def mode(self) -> str:
        """ "token", "dex" or "none"."""
        if self.token:
            return "token"
        if self.dex_user is not None:
            return "dex"
        return "none"

    @property
    def logins(self) -> int:
        """How many Dex logins succeeded (each one issued a session)."""
        return self._logins

    def new_session(self) -> str:
        """A fresh session id, valid for session_ttl seconds (or for ever); expired ones go."""
        session = secrets.token_urlsafe(32)
        now = time.monotonic()
        expires = now + self.session_ttl if self.session_ttl is not None else float("inf")
        with self._lock:
            for old in [s for s, until in self._sessions.items() if until <= now]:
                del self._sessions[old]
            self._sessions[session] = expires
            self._logins += 1
        return session

    def valid_session(self, session: str | None) -> bool:
        """Whether the cookie value is a session this server issued that has not expired."""
        if not session:
            return False
        with self._lock:
            expires = self._sessions.get(session)
            if expires is None:
                return False
            if expires <= time.monotonic():
                del self._sessions[session]
                return False
            return True

    def valid_credentials(self, login: str, password: str) -> bool:
        """Whether login/password are the Dex user's (constant-time)."""
        user_ok = hmac.compare_digest(login.encode(), (self.dex_user or "").encode())
        password_ok = hmac.compare_digest(password.encode(), (self.dex_password or "").encode())
        return user_ok and password_ok


_FORM = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Log in to Your Account</title></head>
<body>
<h2>Log in to Your Account</h2>
{error}
<form method="post" action="{action}">
  <label for="login">Email Address</label>
  <input id="login" name="login" type="text" autofocus required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <input id="hash" name="hash" type="hidden" value="{hash}">
  <button type="submit" id="submit-login">Login</button>
</form>
<script>if (location.hash) document.getElementById("hash").value = location.hash;</script>
</body></html>
"""

_TOKEN_FORM = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Local KFP: log in with the token</title></head>
<body>
<h2>Log in to the local KFP server</h2>
<p>Enter the token the server was started with (<code>--auth-token</code>).</p>
{error}
<form method="post" action="{action}">
  <label for="token">Token</label>
  <input id="token" name="token" type="password" autofocus required>
  <input id="hash" name="hash" type="hidden" value="{hash}">
  <button type="submit" id="submit-token">Log in</button>
</form>
<script>if (location.hash) document.getElementById("hash").value = location.hash;</script>
</body></html>
"""


def _safe_back(back: str | None) -> str:
    """A local path to return to after login (never another host)."""
    if not back:
        return "/"
    parts = urlsplit(back)
    if parts.scheme or parts.netloc or not back.startswith("/") or back.startswith("//"):
        return "/"
    if "\\" in back or not back.isprintable():  # browsers read /\host as //host
        return "/"
    return back


def _safe_hash(fragment: str | None) -> str:
    """The page's hash route (`#/runs/details/ID`) to return to, or '' if it is not one."""
    if not fragment or not fragment.startswith("#") or len(fragment) > 2048:
        return ""
    return fragment if fragment.isprintable() and " " not in fragment else ""


def _form(status: int, error: str = "", page: str = _FORM, path: str = LOGIN_PATH) -> Response:
    back = _safe_back(request.args.get("back"))
    action = f"{path}?back={quote(back, safe='')}"
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    fragment = html.escape(_safe_hash(request.form.get("hash")))  # kept when shown again
    body = page.format(error=message, action=html.escape(action), hash=fragment)
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _token_form(status: int, error: str = "") -> Response:
    return _form(status, error, _TOKEN_FORM, TOKEN_LOGIN_PATH)


def ui_session_cookie() -> str:
    """This server's UI session cookie name, for the port the browser reached it on."""
    port = request.host.rpartition(":")[2] if ":" in request.host else ""
    return f"{UI_SESSION_COOKIE}-{port}" if port.isascii() and port.isdigit() else UI_SESSION_COOKIE


def _ui_login(config: AuthConfig, back: str) -> Response:
    """A browser that showed the right token: a UI session cookie, back to its page."""
    response = redirect(back, code=303)
    response.set_cookie(
        ui_session_cookie(), config.new_session(), path="/", httponly=True, samesite="Strict"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _valid_token(config: AuthConfig, token: str) -> bool:
    return hmac.compare_digest(token.strip().encode(), (config.token or "").encode())


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cross_site_refused() -> Response | None:
    """403 for a cookie-authenticated change sent by a page of another origin (CSRF).

    A browser sends a session cookie with any request to this host, from a page on any of
    its ports too (SameSite ignores ports), and a `text/plain` POST needs no preflight; a
    change is accepted only when the browser says it comes from this server's own pages
    (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to this server's). Clients that
    are not browsers (kfp.Client with the Dex cookie) send neither header and pass."""
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    own_origin = request.host_url.rstrip("/")
    if site is not None:  # the browser's own judgement, when it gives one
        if site in ("same-origin", "none"):
            return None
        refused = f"a request from another site (Sec-Fetch-Site: {site})"
    elif origin is not None and origin != own_origin:
        refused = f"a request from {origin}"
    else:
        return None
    error = ApiError(403, f"Forbidden: {refused} may not change anything here")
    response = jsonify(error.body())
    response.status_code = 403
    return response


def install_auth(app: Flask, config: AuthConfig) -> None:
    """Add the access check (and the Dex login form) to the app."""
    if config.mode == "none":
        return

    if config.mode == "dex":

        @app.route(LOGIN_PATH, methods=["GET", "POST"])
        def dex_login() -> Response:
            if request.method == "GET":
                return _form(200)
            login = request.form.get("login", "")
            password = request.form.get("password", "")
            if not config.valid_credentials(login, password):
                return _form(401, "Invalid Email Address and password.")
            back = _safe_back(request.args.get("back")) + _safe_hash(request.form.get("hash"))
            response = redirect(back, code=303)
            response.set_cookie(
                SESSION_COOKIE, config.new_session(), path="/", httponly=True, samesite="Lax"
            )
            return response

    if config.mode == "token":

        @app.route(TOKEN_LOGIN_PATH, methods=["GET", "POST"])
        def token_login() -> Response:
            if request.method == "GET":
                return _token_form(200)
            if not _valid_token(config, request.form.get("token", "")):
                return _token_form(401, "Invalid token.")
            back = _safe_back(request.args.get("back")) + _safe_hash(request.form.get("hash"))
            return _ui_login(config, back)

    @app.before_request
    def check_access() -> Response | None:
        if request.path.rstrip("/") in OPEN_PATHS:
            return None
        if request.path == LOGIN_PATH and config.mode == "dex":
            return None
        if request.path == TOKEN_LOGIN_PATH and config.mode == "token":
            return None
        if config.mode == "token":
            if request.path in UI_PAGES and "token" in request.args:
                if not _valid_token(config, request.args.get("token", "")):
                    return _token_form(401, "Invalid token.")
                return _ui_login(config, request.path)
            header = request.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and _valid_token(config, value):
                return None
            if config.valid_session(request.cookies.get(ui_session_cookie())):
                return _cross_site_refused()
            if request.path in UI_PAGES and request.method == "GET":
                return redirect(f"{TOKEN_LOGIN_PATH}?back={quote(request.path, safe='')}", 302)
            error = ApiError(401, "Unauthenticated: a valid 'Authorization: Bearer' is required")
            response = jsonify(error.body())
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="local-kfp"'
            return response
        if config.valid_session(request.cookies.get(SESSION_COOKIE)):
            return _cross_site_refused()
        back = request.full_path if request.query_string else request.path
        return redirect(f"{LOGIN_PATH}?back={quote(back, safe='')}", code=302)
