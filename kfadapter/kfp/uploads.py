"""Pipeline packages on their way to KFP's upload API, which reads them from a file."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def package_file(package: bytes) -> Iterator[Path]:
    """A file holding the package in a private temporary directory, removed afterwards.

    Its name is fixed (never the client's file name) and its suffix matches the content,
    since KFP picks the package format from it.
    """
    with tempfile.TemporaryDirectory(prefix="kfadapter-upload-") as directory:
        path = Path(directory) / f"pipeline{package_suffix(package)}"
        path.write_bytes(package)
        yield path


def package_suffix(package: bytes) -> str:
    """The file suffix KFP expects for a package: .zip, .tar.gz, .json or .yaml."""
    if package.startswith(b"PK\x03\x04"):
        return ".zip"
    if package.startswith(b"\x1f\x8b"):
        return ".tar.gz"
    if package.lstrip()[:1] == b"{":
        return ".json"
    return ".yaml"
