"""How a KFP call is made: the generated SDK client, credentials, time-outs, metrics, retries.

`Transport` builds `kfp_server_api`'s service clients on first use (no KFP call is made,
so the adapter starts while KFP is down) on one connection pool that never follows
redirects, adds the credentials of `KfpAuth` and the request id being served
(`X-Request-ID`) to every call, and runs each call with a time-out (`KFP_TIMEOUT`),
counted and timed by `kfadapter.observability.kfp_call`, its errors mapped by
`kfadapter.kfp.errors`. A call that only reads is retried up to `KFP_READ_RETRIES` times
on connection errors; writes never are (except once after a Dex re-login: KFP did not
process them).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3

from kfadapter.errors import KfpError, KfpUnavailable, NotFound
from kfadapter.kfp.auth import KfpAuth
from kfadapter.kfp.errors import mapped_errors
from kfadapter.observability import current_request_id, kfp_call
from kfadapter.settings import Settings

log = logging.getLogger(__name__)

# KFP caps page_size at 200 (backend/src/apiserver/list/list.go): walks use whole pages.
PAGE_SIZE = 200
# Pause before retrying a read after a connection error (doubles each attempt).
RETRY_PAUSE = 0.2


@dataclass(frozen=True)
class Apis:
    """The generated KFP service clients, sharing one HTTP connection pool."""

    api_client: Any
    healthz: Any
    pipelines: Any
    upload: Any
    experiments: Any
    runs: Any
    recurring_runs: Any


class Transport:
    """Makes KFP calls for KfConnect and returns KFP's JSON answers. Thread-safe."""

    def __init__(self, settings: Settings, auth: KfpAuth | None = None) -> None:
        self.settings = settings
        self.auth = auth or KfpAuth(settings)
        self._lock = threading.Lock()
        self._apis: Apis | None = None
        self._timeout = (settings.kfp_timeout, settings.kfp_timeout)

    @property
    def apis(self) -> Apis:
        """The generated service clients, built on first use (no KFP call is made)."""
        if self._apis is None:
            with self._lock:
                if self._apis is None:
                    self._apis = _build_apis(self.settings, self.auth)
        return self._apis

    def read(self, operation: str, method: Callable[..., Any], *args: Any, **params: Any) -> Any:
        """A call that only reads, with path values `args` and query or body `params`
        (`subject`, if given, names what the call is about in errors); retried on
        connection errors."""
        return self._sdk_call(operation, method, args, params, read=True)

    def write(self, operation: str, method: Callable[..., Any], *args: Any, **params: Any) -> Any:
        """A call that changes something (arguments as for `read`): never retried blindly."""
        return self._sdk_call(operation, method, args, params, read=False)

    def walk(
        self,
        operation: str,
        method: Callable[..., Any],
        items_key: str | tuple[str, ...],
        *args: Any,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a KFP list (under `items_key`), page after page of PAGE_SIZE."""
        keys = (items_key,) if isinstance(items_key, str) else items_key
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            answer = self.read(
                operation, method, *args, page_size=PAGE_SIZE, page_token=token, **params
            )
            for key in keys:
                if answer.get(key):
                    yield from answer[key]
                    break
            token = answer.get("next_page_token") or None
            if token is None:
                return
            if token in seen_tokens:
                raise KfpError(
                    f"KFP returned the same page token twice while listing ({operation})"
                )
            seen_tokens.add(token)

    def read_text(
        self, operation: str, path: str, path_params: dict[str, str], *, subject: str
    ) -> str:
        """The text answer of a GET on a KFP path the SDK has no method for (a task log)."""
        refuse_dot_segments(tuple(path_params.values()), subject)

        def fetch(**options: Any) -> Any:
            return self.apis.api_client.call_api(
                path,
                "GET",
                path_params=path_params,
                header_params={"Accept": "text/plain, application/json"},
                auth_settings=["Bearer"],
                _return_http_data_only=True,
                **options,
            )

        return self._call(operation, fetch, read=True, subject=subject, parse=_text_body)

    def write_json(
        self, operation: str, path: str, body: dict[str, Any], *, subject: str
    ) -> dict[str, Any]:
        """The JSON answer of a POST on a KFP path the SDK has no method for (the v1beta1
        runs API); never retried blindly."""

        def post(**options: Any) -> Any:
            return self.apis.api_client.call_api(
                path,
                "POST",
                body=body,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["Bearer"],
                _return_http_data_only=True,
                **options,
            )

        return self._call(operation, post, read=False, subject=subject)

    def _sdk_call(
        self,
        operation: str,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        params: dict[str, Any],
        *,
        read: bool,
    ) -> Any:
        subject = params.pop("subject", None)
        refuse_dot_segments(args, subject or operation)
        present = {key: value for key, value in params.items() if value is not None}
        return self._call(
            operation,
            lambda **options: method(*args, **present, **options),
            read=read,
            subject=subject,
        )

    def _call(
        self,
        operation: str,
        call: Callable[..., Any],
        *,
        read: bool,
        subject: str | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run one KFP call with time-out, metrics, error mapping and (for reads) retries."""
        attempts = 1 + (self.settings.kfp_read_retries if read else 0)
        for attempt in range(attempts):
            try:
                with kfp_call(operation):
                    with mapped_errors(
                        operation,
                        subject,
                        endpoint=self.settings.kfp_endpoint,
                        timeout=self.settings.kfp_timeout,
                    ):
                        response = call(_preload_content=False, _request_timeout=self._timeout)
                    return (parse or _json_body)(response)
            except KfpUnavailable as error:
                if attempt + 1 >= attempts:
                    raise
                log.warning(
                    "KFP %s failed (%s); retry %d of %d",
                    operation,
                    error.message,
                    attempt + 1,
                    attempts - 1,
                )
                time.sleep(RETRY_PAUSE * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def refuse_dot_segments(path_values: tuple[Any, ...], subject: str) -> None:
    """NotFound for an id of "." or "..": in KFP's URL it would name another route.

    The generated client quotes path values but leaves dots alone, and urllib3 removes
    dot segments, so `get_run(".")` would GET KFP's list of runs. No KFP id is a dot.
    """
    if any(isinstance(value, str) and value in (".", "..") for value in path_values):
        raise NotFound(f"{subject} not found")


def _json_body(response: Any) -> dict[str, Any]:
    """The JSON object of a successful KFP answer."""
    try:
        raw = response.data
    finally:
        response.release_conn()
    if not raw or not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise KfpError("KFP answered with something that is not JSON") from None
    if not isinstance(document, dict):
        raise KfpError("KFP answered with JSON that is not an object")
    return document


def _text_body(response: Any) -> str:
    """The text of a successful KFP answer (a log)."""
    try:
        raw = response.data
    finally:
        response.release_conn()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


class _NoRedirectPoolManager(urllib3.PoolManager):
    """A connection pool that never follows redirects: a redirect to a login page is an answer."""

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        return super().urlopen(method, url, redirect=False, **kw)


def _build_apis(settings: Settings, auth: KfpAuth) -> Apis:
    """Create the generated client with auth headers, request ids and no redirects or retries."""
    import kfp_server_api
    from kfp_server_api import rest

    class _RestClient(rest.RESTClientObject):
        """Adds credentials and the request id; logs in again when a Dex session expired."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            headers = dict(kwargs.pop("headers", None) or {})
            sent = self._with_identity(headers)
            try:
                return super().request(method, url, *args, headers=sent, **kwargs)
            except rest.ApiException as error:
                if not auth.is_login_challenge(error.status or 0, error.headers):
                    raise
                log.info("KFP asked the adapter to log in again (HTTP %s)", error.status)
                auth.login(stale_cookie=sent.get("Cookie", ""))
                return super().request(
                    method, url, *args, headers=self._with_identity(headers), **kwargs
                )

        @staticmethod
        def _with_identity(headers: dict[str, str]) -> dict[str, str]:
            sent = {**headers, **auth.headers()}
            request_id = current_request_id()
            if request_id:
                sent["X-Request-ID"] = request_id
            return sent

    configuration = kfp_server_api.Configuration(host=settings.kfp_endpoint)
    configuration.retries = False
    configuration.connection_pool_maxsize = 32
    api_client = kfp_server_api.ApiClient(configuration)
    rest_client = _RestClient(configuration)
    rest_client.pool_manager = _NoRedirectPoolManager(
        num_pools=4, **rest_client.pool_manager.connection_pool_kw
    )
    api_client.rest_client = rest_client
    api_client.user_agent = "kfadapter"
    return Apis(
        api_client=api_client,
        healthz=kfp_server_api.HealthzServiceApi(api_client),
        pipelines=kfp_server_api.PipelineServiceApi(api_client),
        upload=kfp_server_api.PipelineUploadServiceApi(api_client),
        experiments=kfp_server_api.ExperimentServiceApi(api_client),
        runs=kfp_server_api.RunServiceApi(api_client),
        recurring_runs=kfp_server_api.RecurringRunServiceApi(api_client),
    )
