"""The one place the tracking store and its leader lock are chosen, from the settings.

`settings.database_url` set (KFADAPTER_DATABASE_URL, or the framework's PS_* variables):
PostgreSQL, shared by any number of replicas, leader by advisory lock. Unset: SQLite in
the data dir, leader by flock (one host).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from kfadapter.tracking.leader import LeaderElection, LeaderLock, PostgresLeaderLock
from kfadapter.tracking.model import TrackingStore
from kfadapter.tracking.store import SqliteTrackingStore

if TYPE_CHECKING:
    from kfadapter.settings import Settings

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> TrackingStore:
    """The tracking store the settings name."""
    if settings.database_url:
        from kfadapter.tracking.pgstore import PostgresTrackingStore

        return PostgresTrackingStore(
            settings.database_url,
            timeout=settings.database_timeout,
            max_connections=settings.threads + 2,  # request threads + watcher + notifier
            display=f"the tracking database {settings.database_display}",
        )
    return SqliteTrackingStore.in_dir(settings.data_dir)


def open_leader_lock(settings: Settings) -> LeaderElection:
    """The lock that makes one tracker the leader among all sharing the store."""
    if settings.database_url:
        return PostgresLeaderLock(
            settings.database_url,
            timeout=settings.database_timeout,
            keepalive_idle=max(1, math.floor(settings.poll_interval / 2)),
        )
    return LeaderLock.in_dir(settings.data_dir)


def leader_retry_interval(settings: Settings) -> float:
    """How often a follower tries to become leader: half the poll interval (0.05 s to
    5 s), so a dead leader's successor starts well within 2 x the poll interval."""
    return min(max(settings.poll_interval / 2, 0.05), 5.0)
