"""The adapter's settings: read once from the environment into one frozen object."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

DEFAULT_DATA_DIR = "~/.local/share/kfadapter"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The most gunicorn worker processes and threads per worker accepted.
MAX_WORKERS = 64
MAX_THREADS = 256
DEFAULT_DATABASE_NAME = "kfadapter"
# The framework's PostgreSQL settings (the TM reads the same), used when no URL is given.
PS_VARIABLES = ("PS_USER", "PS_PASSWORD", "PS_IP", "PS_PORT", "KFADAPTER_DATABASE_NAME")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the adapter is configured with. Build it with `Settings.from_env()`."""

    kfp_endpoint: str = "http://ml-pipeline-ui.kubeflow:80/pipeline"
    namespace: str | None = None
    adapter_port: int = 5001
    trainingmgr_host: str = "localhost"
    trainingmgr_port: int = 32002
    kfp_token: str | None = None
    kfp_token_file: str | None = None
    kfp_cookie: str | None = None
    kfp_username: str | None = None
    kfp_password: str | None = None
    kfp_timeout: float = 5.0
    kfp_read_retries: int = 2
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).expanduser())
    tracking_enabled: bool = True
    poll_interval: float = 10.0
    notify_deadline: float = 2 * 86400.0
    notify_timeout: float = 10.0
    notify_backoff_base: float = 2.0
    notify_backoff_cap: float = 300.0
    tracking_retention_days: float = 30.0
    max_upload_bytes: int = 32 * 1024 * 1024
    log_format: str = "text"
    log_level: str = "INFO"
    bind: str = ""
    workers: int = 2
    threads: int = 4
    worker_timeout: int = 60
    graceful_timeout: int = 30
    # The tracking store: PostgreSQL at this URL, or SQLite in data_dir when None.
    database_url: str | None = field(default=None, repr=False)
    # The variables database_url came from, for messages ("KFADAPTER_DATABASE_URL", ...).
    database_source: str = ""
    database_timeout: float = 5.0

    @property
    def tracking_backend(self) -> str:
        """Where tracked runs are kept: "postgresql" when a database is set, else "sqlite"."""
        return "postgresql" if self.database_url else "sqlite"

    @property
    def database_display(self) -> str:
        """database_url with the password hidden, for logs and messages."""
        return hide_password(self.database_url or "")

    @property
    def notify_url(self) -> str:
        """Where run outcomes are POSTed for the training manager."""
        return (
            f"http://{self.trainingmgr_host}:{self.trainingmgr_port}"
            "/trainingjob/pipelineNotification"
        )

    @property
    def bind_address(self) -> str:
        """The address gunicorn binds: KFADAPTER_BIND, else all interfaces on the port."""
        return self.bind or f"0.0.0.0:{self.adapter_port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise SettingsError naming what is wrong."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        host = reader.text("KUBEFLOW_HOST", "ml-pipeline-ui.kubeflow")
        port = reader.integer("KUBEFLOW_PORT", 80, minimum=1, maximum=65535)
        endpoint = reader.text("KFP_ENDPOINT", "") or f"http://{host}:{port}/pipeline"
        if not endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"KFP_ENDPOINT must be an http(s) URL, got {endpoint!r}")
        log_format = reader.text("KFADAPTER_LOG_FORMAT", cls.log_format).lower()
        if log_format not in ("text", "json"):
            raise SettingsError(
                f"KFADAPTER_LOG_FORMAT must be 'text' or 'json', got {log_format!r}"
            )
        log_level = reader.text("KFADAPTER_LOG_LEVEL", cls.log_level).upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(
                f"KFADAPTER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
            )
        backoff_base = reader.number(
            "KFADAPTER_NOTIFY_BACKOFF_BASE", cls.notify_backoff_base, minimum=0.01
        )
        backoff_cap = reader.number(
            "KFADAPTER_NOTIFY_BACKOFF_CAP", cls.notify_backoff_cap, minimum=backoff_base
        )
        username = reader.text("KFP_USERNAME", "") or None
        password = reader.text("KFP_PASSWORD", "") or None
        if bool(username) != bool(password):
            raise SettingsError("KFP_USERNAME and KFP_PASSWORD must be set together")
        return cls(
            kfp_endpoint=endpoint.rstrip("/"),
            namespace=reader.text("KF_NAMESPACE", "") or None,
            adapter_port=reader.integer(
                "KF_ADAPTER_PORT", cls.adapter_port, minimum=1, maximum=65535
            ),
            trainingmgr_host=reader.text("TRAININGMGR_HOST", cls.trainingmgr_host),
            trainingmgr_port=reader.integer(
                "TRAININGMGR_PORT", cls.trainingmgr_port, minimum=1, maximum=65535
            ),
            kfp_token=reader.text("KFP_TOKEN", "") or None,
            kfp_token_file=reader.text("KFP_TOKEN_FILE", "") or None,
            kfp_cookie=reader.text("KFP_COOKIE", "") or None,
            kfp_username=username,
            kfp_password=password,
            kfp_timeout=reader.number("KFP_TIMEOUT", cls.kfp_timeout, minimum=0.1),
            kfp_read_retries=reader.integer(
                "KFP_READ_RETRIES", cls.kfp_read_retries, minimum=0, maximum=10
            ),
            data_dir=Path(reader.text("KFADAPTER_DATA_DIR", DEFAULT_DATA_DIR)).expanduser(),
            tracking_enabled=reader.flag("KFADAPTER_TRACKING", cls.tracking_enabled),
            poll_interval=reader.number("KFADAPTER_POLL_INTERVAL", cls.poll_interval, minimum=0.05),
            notify_deadline=reader.number(
                "KFADAPTER_NOTIFY_DEADLINE", cls.notify_deadline, minimum=1
            ),
            notify_timeout=reader.number(
                "KFADAPTER_NOTIFY_TIMEOUT", cls.notify_timeout, minimum=0.1
            ),
            notify_backoff_base=backoff_base,
            notify_backoff_cap=backoff_cap,
            tracking_retention_days=reader.number(
                "KFADAPTER_TRACKING_RETENTION_DAYS", cls.tracking_retention_days, minimum=0
            ),
            max_upload_bytes=reader.integer(
                "KFADAPTER_MAX_UPLOAD_BYTES", cls.max_upload_bytes, minimum=1024
            ),
            log_format=log_format,
            log_level=log_level,
            bind=reader.text("KFADAPTER_BIND", ""),
            workers=reader.integer(
                "KFADAPTER_WORKERS", cls.workers, minimum=1, maximum=MAX_WORKERS
            ),
            threads=reader.integer(
                "KFADAPTER_THREADS", cls.threads, minimum=1, maximum=MAX_THREADS
            ),
            worker_timeout=reader.integer(
                "KFADAPTER_WORKER_TIMEOUT", cls.worker_timeout, minimum=1
            ),
            graceful_timeout=reader.integer(
                "KFADAPTER_GRACEFUL_TIMEOUT", cls.graceful_timeout, minimum=0
            ),
            database_timeout=reader.number(
                "KFADAPTER_DATABASE_TIMEOUT", cls.database_timeout, minimum=0.1
            ),
            **_database(reader),
        )


def _database(reader: _Reader) -> dict[str, str | None]:
    """database_url and database_source: KFADAPTER_DATABASE_URL, else the framework's
    PS_USER, PS_PASSWORD, PS_IP, PS_PORT and KFADAPTER_DATABASE_NAME, else none (SQLite)."""
    url = reader.text("KFADAPTER_DATABASE_URL", "")
    if url:
        check_database_url(url, "KFADAPTER_DATABASE_URL")
        return {"database_url": url, "database_source": "KFADAPTER_DATABASE_URL"}
    given = {name: reader.text(name, "") for name in ("PS_USER", "PS_PASSWORD", "PS_IP")}
    if not any(given.values()):
        return {"database_url": None, "database_source": ""}
    for name, value in given.items():
        if not value:
            raise SettingsError(
                f"{name} must be set when any of PS_USER, PS_PASSWORD, PS_IP is "
                "(the framework's PostgreSQL settings; or set KFADAPTER_DATABASE_URL)"
            )
    port = reader.integer("PS_PORT", 5432, minimum=1, maximum=65535)
    name = reader.text("KFADAPTER_DATABASE_NAME", DEFAULT_DATABASE_NAME)
    host = given["PS_IP"]
    if any(c in host for c in "/@?#[] "):
        raise SettingsError(f"PS_IP must be a host name or an IP address, got {host!r}")
    host = f"[{host}]" if ":" in host else host
    url = (
        f"postgresql://{quote(given['PS_USER'], safe='')}:{quote(given['PS_PASSWORD'], safe='')}"
        f"@{host}:{port}/{quote(name, safe='')}"
    )
    return {"database_url": url, "database_source": "/".join(PS_VARIABLES)}


def check_database_url(url: str, variable: str) -> None:
    """SettingsError naming `variable` unless `url` is a postgresql:// URL with a host and
    a database name (the password is never shown)."""
    shown = hide_password(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise SettingsError(f"{variable} is not a valid URL ({error}): {shown!r}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"{variable} must be a postgresql:// URL "
            f"(postgresql://user:password@host:5432/kfadapter), got {shown!r}"
        )
    if not parts.hostname:
        raise SettingsError(f"{variable} must name a host, got {shown!r}")
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"{variable} has a port out of 1..65535, got {shown!r}")
    if not unquote(parts.path.lstrip("/")):
        raise SettingsError(f"{variable} must name a database (.../kfadapter), got {shown!r}")


def hide_password(url: str) -> str:
    """A database URL with its password (in the user info, or libpq's `password` query
    parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.query:
        query = "&".join(
            f"{key}=***" if key.lower() == "password" else field
            for field in parts.query.split("&")
            for key in [field.partition("=")[0]]
        )
        parts = parts._replace(query=query)
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{hostinfo}")
    return parts.geturl()


class _Reader:
    """Typed access to environment variables with messages that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, default).strip()

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.text(name, "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(f"{name} must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.text(name, "")
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise SettingsError(f"{name} must be a finite number, got {raw!r}")
        if value < minimum:
            raise SettingsError(f"{name} must be >= {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name, "").lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
