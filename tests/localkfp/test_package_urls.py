"""Unit tests of package-URL checks, as KFP's backend/src/apiserver/validation/pipeline_url.go
makes them with its defaults, and of path.Base as pipeline_server.go applies it."""

from __future__ import annotations

import pytest

from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.package_urls import check_url, download, file_name

PUBLIC = lambda host: ["140.82.112.4"]  # noqa: E731


@pytest.mark.parametrize(
    "url",
    [
        "https://raw.githubusercontent.com/o/r/main/p.yaml",
        "https://GitHub.com./o/r/raw/main/p.yaml",
        "https://storage.googleapis.com:443/bucket/p.zip",
    ],
)
def test_allowed_urls_pass(url: str) -> None:
    check_url(url, PUBLIC)


@pytest.mark.parametrize(
    ("url", "resolved", "words"),
    [
        ("http://github.com/p.yaml", ["140.82.112.4"], "scheme"),
        ("ftp://github.com/p.yaml", ["140.82.112.4"], "scheme"),
        ("https://github.com:444/p.yaml", ["140.82.112.4"], "port 443"),
        ("https://[::1]/p.yaml", ["::1"], "allowlist"),
        ("https://gist.github.com/p.yaml", ["140.82.112.4"], "allowlist"),
        ("https://github.com/p.yaml", ["127.0.0.1"], "blocked"),
        ("https://github.com/p.yaml", ["140.82.112.4", "192.168.1.2"], "blocked"),
        ("https://github.com/p.yaml", ["169.254.169.254"], "blocked"),
        ("https://github.com/p.yaml", ["fe80::1%eth0"], "blocked"),
        ("https://github.com/p.yaml", ["fd00:ec2::254"], "blocked"),
        ("p.yaml", [], "invalid URL"),
        # urllib3, which connects, would read the host before the "@": 127.0.0.1:41533
        ("https://127.0.0.1:41533\\@github.com/p.yaml", ["140.82.112.4"], "invalid URL"),
        ("https://user:pw@github.com/p.yaml", ["140.82.112.4"], "credentials"),
        ("https://github.com%2F@10.0.0.5/p.yaml", ["140.82.112.4"], "invalid URL"),
    ],
)
def test_refused_urls_are_400s_saying_why(url: str, resolved: list[str], words: str) -> None:
    with pytest.raises(ApiError) as error:
        check_url(url, lambda host: resolved)
    assert error.value.status == 400 and words in error.value.message


def test_a_fetch_that_is_not_200_is_a_400() -> None:
    with pytest.raises(ApiError) as error:
        download("https://github.com/p.yaml", lambda url: (403, b""), PUBLIC)
    assert error.value.status == 400 and "403" in error.value.message
    assert download("https://github.com/p.yaml", lambda url: (200, b"x"), PUBLIC) == b"x"


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://github.com/o/r/p.yaml", "p.yaml"),
        ("https://github.com/o/r/p.yaml?raw=1", "p.yaml?raw=1"),
        ("https://github.com/o/r/", "r"),
        ("", "."),
    ],
)
def test_file_name_is_gos_path_base(url: str, base: str) -> None:
    assert file_name(url) == base
