"""KfConnect: the adapter's calls to KFP's v2beta1 API, one method a resource operation.

The methods live by resource in pipelines.py (pipelines, versions) and runs.py
(experiments, runs, recurring runs). Each makes its KFP calls through `Transport`
(credentials, time-out, metrics, error mapping, retries of reads) and returns plain dicts
(`kfadapter.kfp.flatten`), never SDK objects. Lists are walked in whole pages; nothing
asks KFP once per row.

Why not `kfp.Client` itself: its constructor asks KFP's healthz up to 5 times with 5 s
sleeps when no namespace is set (the adapter must start while KFP is down), it reads and
writes `~/.config/kfp/context.json`, prints links to stdout, and its methods take no
time-out. The generated client underneath (`kfp_server_api`) gives the same calls with
those under control.
"""

from __future__ import annotations

from typing import Any

from kfadapter.kfp.auth import KfpAuth
from kfadapter.kfp.pipelines import PipelineCalls
from kfadapter.kfp.runs import RunCalls
from kfadapter.kfp.transport import Transport
from kfadapter.settings import Settings


class KfConnect(PipelineCalls, RunCalls):
    """Calls KFP for the adapter and returns plain dicts. Thread-safe; no KFP call until used."""

    def __init__(self, settings: Settings, auth: KfpAuth | None = None) -> None:
        self.settings = settings
        self._kfp = Transport(settings, auth)
        self._namespace = settings.namespace

    @property
    def auth(self) -> KfpAuth:
        """The credentials sent to KFP."""
        return self._kfp.auth

    def healthz(self) -> dict[str, Any]:
        """KFP's healthz answer (raises when KFP is unreachable or failing)."""
        return self._kfp.read("healthz", self._kfp.apis.healthz.healthz_service_get_healthz)
