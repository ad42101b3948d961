"""The Argo node tree of task details from worker events, without running anything.

The events carry the optional fields the rewritten worker adds (`task_name`, `parent`,
`kind`, events of DAG tasks); today's worker sends none of them (see
test_fidelity_tasks.py for real runs). KFP source: `server/api_converter.go`
`toModelTasks`, `common/util/workflow.go` `NodeStatuses`, `argocompiler/dag.go`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kfadapter.localkfp import argo_nodes
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.run_progress import RunProgress

SPEC = {
    "pipelineInfo": {"name": "outer"},
    "root": {
        "dag": {
            "tasks": {
                "a": {"componentRef": {"name": "comp-a"}, "taskInfo": {"name": "a"}},
                "sub": {
                    "componentRef": {"name": "comp-sub"},
                    "dependentTasks": ["a"],
                    "taskInfo": {"name": "sub"},
                },
                "b": {
                    "componentRef": {"name": "comp-a"},
                    "dependentTasks": ["sub"],
                    "taskInfo": {"name": "b"},
                },
            }
        }
    },
    "components": {
        "comp-a": {"executorLabel": "exec-a"},
        "comp-sub": {
            "dag": {
                "tasks": {
                    "x": {"componentRef": {"name": "comp-a"}, "taskInfo": {"name": "x"}},
                    "y": {
                        "componentRef": {"name": "comp-a"},
                        "dependentTasks": ["x"],
                        "taskInfo": {"name": "Why"},
                    },
                }
            }
        },
    },
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(name: str, seconds: int, **fields) -> bytes:
    moment = protocol.to_event_time(T0 + timedelta(seconds=seconds))
    return json.dumps({"event": name, "time": moment, **fields}).encode()


def progress(tmp_path, events: list[bytes]) -> RunProgress:
    run = RunProgress.of("run-1", SPEC, {}, tmp_path)
    run.state, run.started_at = "RUNNING", T0
    for line in events:
        run.handle_event(line)
    return run


def by_name(run: RunProgress) -> dict[str, dict]:
    """Node name (without the workflow's, "" for the workflow's node) -> entry.

    The entries are sorted by node id; the nodes present are the workflow's and every
    entry's children, whose ids are computed from the names Argo gives.
    """
    workflow = argo_nodes.workflow_name(SPEC, "run-1")
    names = [
        workflow,
        *(f"{workflow}.{n}" for n in ("root-driver", "root", "root.sub-driver", "root.sub")),
        *(f"{workflow}.root.{t}{s}" for t in ("a", "b") for s in ("-driver", "", ".executor")),
        *(f"{workflow}.root.sub.{t}{s}" for t in ("x", "y") for s in ("-driver", "", ".executor")),
    ]
    ids = {argo_nodes.node_id(workflow, name): name for name in names}
    details = run.task_details()
    children = {c["pod_name"] for d in details for c in d.get("child_tasks") or []}
    present = sorted({workflow} | children)
    assert len(present) == len(details)
    short = {
        i: name.removeprefix(workflow).lstrip(".").removeprefix("root.") for i, name in ids.items()
    }
    return {short[i]: d for i, d in zip(present, details, strict=True)}


def test_reported_dag_paths_kinds_and_dag_events_shape_the_tree(tmp_path):
    events = [
        event("task_started", 1, task_id="1", pod_name="a", display_name="a"),
        event("task_finished", 2, task_id="1", state="SUCCEEDED"),
        event("task_started", 3, task_id="2", display_name="sub", task_name="sub", kind="dag"),
        event("task_started", 3, task_id="3", pod_name="x", display_name="x", parent="sub"),
        event("task_finished", 4, task_id="3", state="SUCCEEDED"),
        event("task_started", 5, task_id="4", pod_name="y", display_name="Why", parent="sub"),
    ]
    run = progress(tmp_path, events)
    nodes = by_name(run)
    assert set(nodes) == {
        *("", "root-driver", "root", "a-driver", "a", "a.executor", "sub-driver", "sub"),
        *("sub.x-driver", "sub.x", "sub.x.executor", "sub.y-driver", "sub.y", "sub.y.executor"),
    }
    assert nodes[""]["display_name"] == argo_nodes.workflow_name(SPEC, "run-1")
    assert nodes["sub.y"]["display_name"] == "y"  # the spec key, not taskInfo.name
    assert nodes["sub"]["state"] == "RUNNING" and nodes["sub"]["end_time"] == argo_nodes.NEVER
    assert nodes["sub.x.executor"]["state"] == "SUCCEEDED"
    workflow = argo_nodes.workflow_name(SPEC, "run-1")
    # the sub-DAG's driver waits for a's pod; y's driver for x's pod
    a_pod = nodes["a.executor"]["child_tasks"]
    assert a_pod == [{"pod_name": argo_nodes.node_id(workflow, f"{workflow}.root.sub-driver")}]
    x_pod = nodes["sub.x.executor"]["child_tasks"]
    assert x_pod == [{"pod_name": argo_nodes.node_id(workflow, f"{workflow}.root.sub.y-driver")}]
    # the logs are linked under the executor pods' names
    logs = sorted(p.name for p in (run.directory / "logs").iterdir())
    assert len(logs) == 3 and all("-system-container-impl-" in name for name in logs)

    run.handle_event(event("task_finished", 6, task_id="4", state="SUCCEEDED"))
    run.handle_event(event("task_finished", 6, task_id="2", state="SUCCEEDED"))
    run.handle_event(event("task_started", 7, task_id="5", pod_name="b", display_name="b"))
    nodes = by_name(run)
    assert nodes["sub"]["state"] == "SUCCEEDED"
    # b's driver waits for the sub-DAG's last pod (y), as Argo's outbound nodes go
    assert nodes["sub.y.executor"]["child_tasks"] == [
        {"pod_name": argo_nodes.node_id(workflow, f"{workflow}.root.b-driver")}
    ]


def test_a_task_without_a_parent_is_placed_by_its_name(tmp_path):
    """Today's worker names no DAG: `x` is only in comp-sub, so it is placed there."""
    events = [
        event("task_started", 1, task_id="1", pod_name="a", display_name="a"),
        event("task_finished", 2, task_id="1", state="SUCCEEDED"),
        event("task_started", 3, task_id="2", pod_name="x", display_name="x"),
    ]
    nodes = by_name(progress(tmp_path, events))
    assert {"sub-driver", "sub", "sub.x", "sub.x.executor"} <= set(nodes)


def test_no_task_started_means_no_task_details(tmp_path):
    assert progress(tmp_path, []).task_details() == []
