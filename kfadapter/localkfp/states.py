"""Run states as KFP names them (`V2beta1RuntimeState`), in the groups the server acts on."""

FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED")
