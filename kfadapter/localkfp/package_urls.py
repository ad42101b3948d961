"""Fetching a version's package from its `package_url`, under KFP's rules.

As `validation/pipeline_url.go` with its defaults: https only, port 443, a host on the
allow-list, and no address in a loopback, private, link-local or metadata range (checked
again for every redirect); `server/pipeline_server.go` then reads the file under the URL's
last path element (`path.Base`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from kfadapter.localkfp.apierrors import ApiError, bad_request
from kfadapter.localkfp.packages import MAX_PACKAGE_BYTES

ALLOWED_DOMAINS = (
    "storage.googleapis.com",
    "s3.amazonaws.com",
    "github.com",
    "raw.githubusercontent.com",
)
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "0.0.0.0/8",
        "::/128",
    )
)
FETCH_TIMEOUT_SECONDS = 30
MAX_REDIRECTS = 10

Resolver = Callable[[str], list[str]]
Fetcher = Callable[[str], tuple[int, bytes]]
"""GET a checked URL: (HTTP status, body). The seam tests use to stand in for the network."""


def resolve(host: str) -> list[str]:
    """The IP addresses a host name resolves to; 400 when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise _refused(f"DNS resolution failed for {host!r}: {error}") from None
    return [info[4][0] for info in infos]


def check_url(url: str, resolver: Resolver = resolve) -> None:
    """400 unless KFP 2.17 would fetch this pipeline URL (`ValidatePipelineURL`)."""
    parts = urlsplit(url)
    if not parts.scheme or not (parts.netloc or parts.path.startswith("/")):
        raise _refused(f"invalid URL {url!r}")
    # the host checked must be the host connected to: no credentials, and urllib3 (which
    # connects) must read the same host and port as urlsplit (which is checked)
    if "@" in parts.netloc or "\\" in url or "%" in parts.netloc:
        raise _refused(f"invalid URL {url!r}: credentials or escapes in the host")
    try:
        connected = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise _refused(f"invalid URL {url!r}") from None
    if (connected.host or "").strip("[]").lower() != (parts.hostname or "").lower() or (
        connected.port != parts.port
    ):
        raise _refused(f"invalid URL {url!r}: its host is ambiguous")
    if parts.scheme != "https":
        raise _refused(f"URL scheme {parts.scheme!r} not allowed, use https")
    try:
        port = parts.port
    except ValueError:
        raise _refused(f"invalid port in URL {url!r}") from None
    if port not in (None, 443):
        raise _refused(f"HTTPS requires port 443, got {str(port)!r}")
    host = (parts.hostname or "").rstrip(".").lower()
    if host not in ALLOWED_DOMAINS:
        raise _refused(
            f"URL domain {host!r} not in allowlist ({', '.join(ALLOWED_DOMAINS)}); upload "
            "the package instead"
        )
    for address in resolver(host):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in network for network in BLOCKED_NETWORKS):
            raise _refused(f"URL resolves to blocked IP range: {ip}")


def fetch(url: str) -> tuple[int, bytes]:
    """GET the URL with no proxy, checking every redirect as the first URL was checked."""
    session = requests.Session()
    session.trust_env = False
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = session.get(
                url, timeout=FETCH_TIMEOUT_SECONDS, allow_redirects=False, stream=True
            )
            if not response.is_redirect:
                body = response.raw.read(MAX_PACKAGE_BYTES + 1, decode_content=True)
                if len(body) > MAX_PACKAGE_BYTES:
                    raise bad_request(
                        f"the pipeline file at {url} is larger than {MAX_PACKAGE_BYTES} bytes"
                    )
                return response.status_code, body
            url = urljoin(url, response.headers["Location"])
            check_url(url)
        raise bad_request("Pipeline URL validation failed: too many redirects")
    except requests.RequestException as error:
        raise ApiError(500, f"error downloading the pipeline spec from {url}: {error}") from None
    finally:
        session.close()


def download(url: str, fetcher: Fetcher = fetch, resolver: Resolver = resolve) -> bytes:
    """The package at a checked URL; 400 when refused or not 200, 500 when unreachable."""
    check_url(url, resolver)
    status, body = fetcher(url)
    if status != 200:
        raise bad_request(
            f"Failed to fetch pipeline spec with url: {url}. Request returned {status}"
        )
    return body


def file_name(url: str) -> str:
    """The last element of the URL as Go's `path.Base` gives it (query string included)."""
    trimmed = url.rstrip("/")
    if not trimmed:
        return "/" if url else "."
    return trimmed.rsplit("/", 1)[-1]


def _refused(reason: str) -> ApiError:
    return bad_request(f"Pipeline URL validation failed: {reason}")
