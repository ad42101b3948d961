"""Where the embedded server's new ids come from: injected, as KFP's `UUIDGeneratorInterface`,
so that tests can name what they create."""

from __future__ import annotations

import uuid
from collections.abc import Callable

IdSource = Callable[[], str]


def new_uuid() -> str:
    """A new resource id (a UUID, as KFP uses)."""
    return str(uuid.uuid4())
