"""Where the embedded server's times and new ids come from.

Injected into its services, as KFP's API server injects `util.TimeInterface` and
`util.UUIDGeneratorInterface`, so that a test can set the time instead of sleeping and
knows the ids of what it creates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from kfadapter.localkfp.timefmt import now_us

Clock = Callable[[], int]  # microseconds since the epoch
IdSource = Callable[[], str]


def new_uuid() -> str:
    """A new resource id (a UUID, as KFP uses)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Sources:
    """A clock and an id source."""

    clock: Clock = now_us
    new_id: IdSource = new_uuid


SYSTEM = Sources()
"""The system clock and random UUIDs."""
