"""The command-line values of task environments: the cache's size bound and image packages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CACHE_SIZE = 5 * 1024**3
"""Default bound of the environment cache: 5 GiB."""

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """Bytes from a size such as ``5GiB``, ``800MB``, ``2G`` or ``1048576``.

    ``KiB``/``Ki``, ``MiB``/``Mi``, ``GiB``/``Gi``, ``TiB``/``Ti`` are powers of 1024;
    ``K``/``KB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB`` powers of 1000.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number of bytes, optionally with a unit"
            " (e.g. 5GiB, 800MB, 2G)"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: it must be more than 0 bytes")
    return size


def parse_image_packages(items: Sequence[str]) -> dict[str, Path]:
    """``IMAGE=REQUIREMENTS_FILE`` items as a mapping (files resolved to absolute paths)."""
    mapping: dict[str, Path] = {}
    for item in items:
        image, equals, file_name = item.partition("=")
        image = image.strip()
        if not equals or not image or not file_name.strip():
            raise ValueError(f"invalid image packages {item!r}: expected IMAGE=REQUIREMENTS_FILE")
        path = Path(file_name.strip()).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"invalid image packages {item!r}: no such file {path}")
        if image in mapping and mapping[image] != path:
            raise ValueError(f"invalid image packages {item!r}: image {image!r} is mapped twice")
        mapping[image] = path
    return mapping
