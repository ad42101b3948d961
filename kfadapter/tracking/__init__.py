"""Run tracking: remember the runs started for training jobs and notify the TM of outcomes.

- `Tracker` (tracker.py): the one object the app uses; the leader's background threads;
- `Watcher` (watcher.py): one poll asks KFP for every open run's state;
- `Notifier` (notifier.py): delivers outcomes to the TM with retries (`RetryPolicy`);
- `TrackingStore` (model.py), `SqliteTrackingStore` (store.py) and
  `PostgresTrackingStore` (pgstore.py, several replicas): the durable record;
- `LeaderLock` and `PostgresLeaderLock` (leader.py): one watcher per store;
- backends.py: the one place the settings choose the store and its leader lock;
- paging.py: /trainingjobs page tokens.
"""

from kfadapter.tracking.model import (
    DELIVERED,
    EXPIRED,
    NOTIFICATION_STATUSES,
    PENDING,
    UNTRACKED,
    WAITING,
    TrackedRun,
    TrackingStore,
)
from kfadapter.tracking.notifier import RetryPolicy, notification_payload
from kfadapter.tracking.store import SqliteTrackingStore
from kfadapter.tracking.tracker import PRUNE_INTERVAL, Tracker
from kfadapter.tracking.watcher import FINAL_STATES, NOT_FOUND, RunStateSource

__all__ = [
    "DELIVERED",
    "EXPIRED",
    "FINAL_STATES",
    "NOTIFICATION_STATUSES",
    "NOT_FOUND",
    "PENDING",
    "PRUNE_INTERVAL",
    "UNTRACKED",
    "WAITING",
    "RetryPolicy",
    "RunStateSource",
    "SqliteTrackingStore",
    "TrackedRun",
    "Tracker",
    "TrackingStore",
    "notification_payload",
]
