"""The watcher: one poll asks KFP for the states of every open run at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from kfadapter.tracking.model import StateUpdate, TrackingStore
from kfadapter.tracking.notifier import notification_id

log = logging.getLogger(__name__)

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
NOT_FOUND = "NOT_FOUND"


class RunStateSource(Protocol):
    """Where run states come from: KfConnect in the adapter, a small fake in unit tests."""

    def run_states(self, run_ids: Collection[str]) -> dict[str, str]:
        """run_id -> KFP state for the runs KFP knows; a run KFP does not know is absent.

        Costs list calls that grow with pages of runs, not with len(run_ids).
        """


@dataclass
class PollResult:
    """What one poll did."""

    open_runs: int = 0
    finished: dict[str, str] = field(default_factory=dict)  # run_id -> final state
    error: str | None = None


class Watcher:
    """Turns KFP's run states into store updates: final runs become pending notifications."""

    def __init__(
        self,
        store: TrackingStore,
        source: RunStateSource,
        *,
        not_found_confirmations: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not_found_confirmations < 1:
            raise ValueError("not_found_confirmations must be at least 1")
        self._store = store
        self._source = source
        self._confirmations = not_found_confirmations
        self._clock = clock

    def poll_once(self) -> PollResult:
        """Ask for every open run's state with one run_states call and record what changed."""
        open_runs = self._store.open_runs()
        result = PollResult(open_runs=len(open_runs))
        if not open_runs:
            return result
        try:
            states = self._source.run_states([run.run_id for run in open_runs])
        except Exception as error:  # KFP down or misbehaving: try again next poll
            result.error = f"{type(error).__name__}: {error}"
            log.warning("cannot poll %d open runs: %s", len(open_runs), result.error)
            return result
        updates = []
        for run in open_runs:
            state = states.get(run.run_id)
            if state is None:
                missing = run.not_found_count + 1
                if missing >= self._confirmations:
                    updates.append(_final(run.run_id, NOT_FOUND, missing))
                    result.finished[run.run_id] = NOT_FOUND
                else:
                    updates.append(StateUpdate(run.run_id, run.run_state, missing))
                continue
            state = _state_name(state)
            if state in FINAL_STATES:
                updates.append(_final(run.run_id, state, 0))
                result.finished[run.run_id] = state
            else:
                updates.append(StateUpdate(run.run_id, state, 0))
        self._store.record_poll(updates, self._clock())
        for run_id, state in result.finished.items():
            log.info("run %s reached final state %s", run_id, state)
        return result


def _final(run_id: str, state: str, not_found_count: int) -> StateUpdate:
    return StateUpdate(
        run_id,
        state,
        not_found_count,
        final=True,
        notification_id=notification_id(run_id, state),
    )


def _state_name(state: object) -> str:
    """A KFP state as its plain upper-case name ("RuntimeState.SUCCEEDED" -> "SUCCEEDED")."""
    return str(state).rsplit(".", 1)[-1].strip().upper()
