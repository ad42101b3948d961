"""How the adapter authenticates to KFP: bearer token, token file, cookie or Dex login.

`KfpAuth.headers()` gives the headers to add to every KFP call. A token file (a mounted
service-account token that rotates) is re-read whenever its modification time changes.
With a Dex user and password the adapter logs in the way a browser does: GET the KFP
endpoint following redirects (to the login form), POST `login` and `password` to the
URL that GET ended at, and keep the session cookie (`authservice_session`) that comes
back; when KFP answers 401 or redirects to a login page, the session has expired and
`login()` is called again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

import requests

from kfadapter.errors import KfpError, KfpTimeout, KfpUnavailable
from kfadapter.observability import kfp_call
from kfadapter.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "authservice_session"


class KfpAuth:
    """The credentials sent to KFP, built from the settings; safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._token_file_mtime: float | None = None
        self._token_from_file: str | None = None
        self._session_cookie: str | None = None
        self._logins = 0

    @property
    def uses_login(self) -> bool:
        """True when the adapter logs in with a Dex user and password."""
        return bool(self._settings.kfp_username and self._settings.kfp_password)

    @property
    def logins(self) -> int:
        """How many Dex logins succeeded so far."""
        return self._logins

    def headers(self) -> dict[str, str]:
        """Authorization and Cookie headers for one KFP call (logging in first if needed)."""
        headers: dict[str, str] = {}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        cookies = [c for c in (self._settings.kfp_cookie, self._login_cookie()) if c]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        return headers

    def is_login_challenge(self, status: int, headers: Mapping[str, str] | None) -> bool:
        """Whether a KFP answer means "log in again": 401, or a redirect to a login page."""
        if not self.uses_login:
            return False
        if status == 401:
            return True
        if status in (301, 302, 303, 307, 308):
            location = header(headers, "Location").lower()
            return any(word in location for word in ("login", "dex", "auth"))
        return False

    def login(self, stale_cookie: str | None = None) -> None:
        """Log in to Dex and keep the session cookie; skipped when another thread just did.

        `stale_cookie` is the Cookie header the failed call sent: when the stored session
        already differs from it, someone else logged in meanwhile and nothing is done.
        """
        with self._lock:
            fresh = self._session_cookie
            if stale_cookie is not None and fresh is not None and fresh not in stale_cookie:
                return
            with kfp_call("dex_login"):
                self._session_cookie = self._dex_login()
            self._logins += 1

    # ------------------------------------------------------------------ internals

    def _token(self) -> str | None:
        """The bearer token: KFP_TOKEN, else KFP_TOKEN_FILE's content (re-read on change)."""
        if self._settings.kfp_token:
            return self._settings.kfp_token
        path = self._settings.kfp_token_file
        if not path:
            return None
        try:
            mtime = os.stat(path).st_mtime
            if mtime != self._token_file_mtime:
                with open(path, encoding="utf-8") as handle:
                    token = handle.read().strip()
                with self._lock:
                    self._token_from_file, self._token_file_mtime = token, mtime
                log.info("read the KFP token from %s", path)
        except OSError as error:
            raise KfpUnavailable(
                f"cannot read the KFP token file {path}: {error.strerror or error}"
            ) from None
        return self._token_from_file

    def _login_cookie(self) -> str | None:
        """`authservice_session=...` once logged in; logs in on first use."""
        if not self.uses_login:
            return None
        if self._session_cookie is None:
            self.login()
        return self._session_cookie

    def _dex_login(self) -> str:
        """Run the browser-like Dex login and return the session cookie as `name=value`."""
        endpoint = self._settings.kfp_endpoint
        timeout = self._settings.kfp_timeout
        with requests.Session() as session:
            try:
                form = session.get(endpoint, timeout=timeout, allow_redirects=True)
                answer = session.post(
                    form.url,
                    data={
                        "login": self._settings.kfp_username,
                        "password": self._settings.kfp_password,
                    },
                    timeout=timeout,
                    allow_redirects=True,
                )
            except requests.Timeout:
                raise KfpTimeout(f"the Dex login at {endpoint} did not answer in time") from None
            except requests.RequestException as error:
                raise KfpUnavailable(f"the Dex login at {endpoint} failed: {error}") from None
            cookie = session.cookies.get(SESSION_COOKIE)
            if cookie:
                log.info("logged in to KFP as %s", self._settings.kfp_username)
                return f"{SESSION_COOKIE}={cookie}"
            raise KfpError(
                f"the Dex login as {self._settings.kfp_username!r} at {form.url} gave no "
                f"{SESSION_COOKIE} cookie (HTTP {answer.status_code}): check "
                "KFP_USERNAME and KFP_PASSWORD"
            )


def header(headers: Mapping[str, str] | None, name: str) -> str:
    """A header's value by case-insensitive name, or ''."""
    if not headers:
        return ""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""
