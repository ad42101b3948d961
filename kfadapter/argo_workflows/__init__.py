"""KFP v1 pipelines: Argo `Workflow` documents as KFP 2.17 recognises, checks and runs them.

kfp 1.8 (`dsl-compile`, `Compiler().compile()`) and Elyra's KFP processor write an Argo
Workflow; KFP 2.17 stores it as a V1 template (`apiserver/template/template.go`:
`isArgoWorkflow`, an `apiVersion` of `argoproj.io/...` and `kind: Workflow`). Its run
parameters are `spec.arguments.parameters` (a name and an optional `value`, always a
string to Argo). No I/O here, and no kfp import: the embedded server and the adapter both
use it.

- `document`: recognising one (`is_workflow`, `template_type`), `WorkflowError`, the
  entrypoint's tasks.
- `validation`: `check_upload`, what KFP checks when it stores one
  (`template/argo_template.go` ValidateWorkflow, then Argo's validation; `shape` and
  `rules` hold its parts), and `check_runnable`, what creating a run adds
  (`resource/resource_manager.go` CreateRun).
- `run_parameters`: the parameters read, and `with_values`, `template/argo_template.go`
  RunWorkflow's treatment of the values: `VerifyParameters` (`unrecognized`),
  `OverrideParameters`, then the `[[RunUUID]]`, `[[ScheduledTime]]`, `[[CurrentTime]]`
  macros (`common/util/parameter_formatter.go`).
- `names`: `fnv32a`, `node_id` and `pod_name`, the names Argo gives a run's nodes and pods
  (POD_NAMES v2; KFP's `common/util/workflow.go` RetrievePodName).
"""

from kfadapter.argo_workflows.document import (
    API_VERSION,
    KIND,
    WorkflowError,
    entrypoint_tasks,
    is_workflow,
    template_type,
)
from kfadapter.argo_workflows.names import fnv32a, node_id, pod_name
from kfadapter.argo_workflows.run_parameters import (
    any_string,
    format_macros,
    parameters,
    unrecognized,
    values_of,
    with_values,
)
from kfadapter.argo_workflows.validation import check_runnable, check_upload

__all__ = [
    "API_VERSION",
    "KIND",
    "WorkflowError",
    "any_string",
    "check_runnable",
    "check_upload",
    "entrypoint_tasks",
    "fnv32a",
    "format_macros",
    "is_workflow",
    "node_id",
    "parameters",
    "pod_name",
    "template_type",
    "unrecognized",
    "values_of",
    "with_values",
]
