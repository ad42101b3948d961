"""The typed seams hold: every implementation offers what its protocol promises.

`typing.Protocol` is structural, so nothing else checks that KfConnect and the fast
tier's FakeKfp still match `KfpClient`, that the Tracker is the `RunTracker` the API
uses, that both tracking stores are `TrackingStore`s and both leader locks
`LeaderElection`s, or that the executors are the `Executor` the run service uses. A method renamed
or re-parametrised on one side only fails here.
"""

from __future__ import annotations

import inspect

import pytest

from kfadapter.api.common import RunTracker
from kfadapter.kfp import KfConnect, KfpClient
from kfadapter.localkfp.execution import Executor
from kfadapter.localkfp.executor import RunExecutor
from kfadapter.observability import TrackerStats
from kfadapter.tracking import RunStateSource, SqliteTrackingStore, Tracker, TrackingStore
from kfadapter.tracking.leader import LeaderElection, LeaderLock, PostgresLeaderLock
from kfadapter.tracking.pgstore import PostgresTrackingStore
from tests.fake_kfp import FakeKfp
from tests.localkfp.conftest import HeldExecutor


def _promised(protocol: type) -> list[str]:
    """The methods a protocol declares."""
    return [
        name
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    ]


def _parameters(function: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (KfpClient, KfConnect),
        (KfpClient, FakeKfp),
        (RunStateSource, KfConnect),
        (RunStateSource, FakeKfp),
        (RunTracker, Tracker),
        (TrackerStats, Tracker),
        (Executor, RunExecutor),
        (Executor, HeldExecutor),
        (TrackingStore, SqliteTrackingStore),
        (TrackingStore, PostgresTrackingStore),
        (LeaderElection, LeaderLock),
        (LeaderElection, PostgresLeaderLock),
    ],
)
def test_implementations_offer_every_method_of_their_protocol(protocol, implementation):
    assert _promised(protocol), protocol
    for name in _promised(protocol):
        method = getattr(implementation, name, None)
        assert callable(method), f"{implementation.__name__} has no {name}()"
        promised = _parameters(getattr(protocol, name))
        offered = _parameters(method)
        assert offered[: len(promised)] == promised, f"{implementation.__name__}.{name}"
        extra = offered[len(promised) :]
        assert all(default is not inspect.Parameter.empty for _, _, default in extra), (
            f"{implementation.__name__}.{name} needs more than {protocol.__name__} gives"
        )
