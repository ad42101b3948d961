"""Run states as KFP names them (`V2beta1RuntimeState`), in the groups the server acts on."""

FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED")
# The states KFP's TerminateRun changes to CANCELING (`storage/run_store.go`); any other
# state (a final one, or CANCELING already) is refused with 400.
TERMINABLE_STATES = ("PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED")
# The states a run may be retried from: an Argo workflow in phase Failed or Error
# (`common/util/workflow.go`, GenerateRetryExecution). A terminated run is one of them;
# CANCELED is there for runs that servers before this release ended so.
RETRYABLE_STATES = ("FAILED", "CANCELED")


def reported_state(state: str) -> str:
    """The state KFP reports for a run that an executor reports in `state`.

    On a cluster a terminated run's workflow gets activeDeadlineSeconds 0 and Argo ends
    it in phase Failed, which KFP reports as FAILED; it never reports CANCELED for it.
    """
    return "FAILED" if state == "CANCELED" else state
