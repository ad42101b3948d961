"""The Argo node tree of task details from worker events, without running anything.

The events carry the fields the worker sends (`task_name`, `parent`, `kind`, events of
DAG tasks: sub-pipelines, conditions, loops and their iterations); events without them
are placed by name (see test_fidelity_tasks.py for real runs). KFP source: `server/api_converter.go`
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


def container(name: str, *after: str, **extra) -> dict:
    task = {"componentRef": {"name": "comp-c"}, "taskInfo": {"name": name}, **extra}
    return {**task, "dependentTasks": list(after)} if after else task


LOOP_SPEC = {
    "pipelineInfo": {"name": "loops"},
    "root": {
        "dag": {
            "tasks": {
                "make": container("make"),
                "for-loop-1": {
                    "componentRef": {"name": "comp-for-loop-1"},
                    "dependentTasks": ["make"],
                    "parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2]"}},
                    "taskInfo": {"name": "for-loop-1"},
                },
                "after": container("after", "for-loop-1"),
            }
        }
    },
    "components": {
        "comp-c": {"executorLabel": "exec-c"},
        "comp-for-loop-1": {"dag": {"tasks": {"sq": container("sq")}}},
    },
    "deploymentSpec": {"executors": {"exec-c": {"container": {"image": "python:3.11"}}}},
}

HOOK_SPEC = {
    "pipelineInfo": {"name": "hooks"},
    "root": {
        "dag": {
            "tasks": {
                "condition-1": {
                    "componentRef": {"name": "comp-condition-1"},
                    "taskInfo": {"name": "condition-1"},
                    "triggerPolicy": {"condition": "false"},
                },
                "exit-handler-1": {
                    "componentRef": {"name": "comp-exit-handler-1"},
                    "taskInfo": {"name": "exit-handler-1"},
                },
                "report": container(
                    "report",
                    "exit-handler-1",
                    triggerPolicy={"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"},
                ),
            }
        }
    },
    "components": {
        "comp-c": {"executorLabel": "exec-c"},
        "comp-condition-1": {"dag": {"tasks": {"never": container("never")}}},
        "comp-exit-handler-1": {"dag": {"tasks": {"body": container("body")}}},
    },
    "deploymentSpec": {"executors": {"exec-c": {"container": {"image": "python:3.11"}}}},
}


def run_of(tmp_path, spec: dict, events: list[bytes], state: str = "RUNNING") -> RunProgress:
    run = RunProgress.of("run-1", spec, {}, tmp_path)
    run.state, run.started_at = "RUNNING", T0
    for line in events:
        run.handle_event(line)
    run.state = state
    return run


def nodes_named(run: RunProgress, names: list[str]) -> dict[str, dict]:
    """Node name (after `<workflow>.root.`; "" the workflow's) -> entry, checking that the
    details are exactly these nodes: every node but the workflow's is some node's child,
    and the entries are sorted by node id."""
    workflow = argo_nodes.workflow_name(run.pipeline_spec, "run-1")
    full = {name: f"{workflow}.root.{name}" if name else workflow for name in names}
    full.update({"root": f"{workflow}.root", "root-driver": f"{workflow}.root-driver"})
    ids = {argo_nodes.node_id(workflow, name): short for short, name in full.items()}
    details = run.task_details()
    children = {c["pod_name"] for d in details for c in d.get("child_tasks") or []}
    assert sorted({workflow} | children) == sorted(ids)
    assert len(details) == len(ids)
    return {ids[i]: d for i, d in zip(sorted(ids), details, strict=True)}


def child_names(run: RunProgress, entry: dict) -> list[str]:
    workflow = argo_nodes.workflow_name(run.pipeline_spec, "run-1")
    return sorted(c["pod_name"].removeprefix(f"{workflow}-") for c in entry["child_tasks"])


def hashes(run: RunProgress, *names: str) -> list[str]:
    workflow = argo_nodes.workflow_name(run.pipeline_spec, "run-1")
    return sorted(str(argo_nodes.fnv32a(f"{workflow}.root.{name}")) for name in names)


def test_a_parallel_for_is_shaped_as_kfps_iterator_dag(tmp_path):
    """`argocompiler/dag.go` `iteratorTask` / `iterationItemTask`: the loop task `L` (no
    driver) > `iteration-driver` > `iteration-iterations`, a withSequence Argo expands
    (`workflow/controller/dag.go` `expandTask`, `processItem`: `<task>(<i>:<item>)`) into
    a TaskGroup of DAGs `iteration-iterations(i:i)` > `iteration-item-driver` >
    `iteration-item` holding the body's tasks; the loop's dependents hang from every
    iteration's last pods (`getOutboundNodes` of a TaskGroup: its children's)."""
    loop_events = [
        event("task_started", 1, task_id="m", pod_name="make", display_name="make", parent=""),
        event("task_finished", 2, task_id="m", state="SUCCEEDED"),
        event(
            "task_started",
            3,
            task_id="L",
            display_name="for-loop-1",
            task_name="for-loop-1",
            parent="",
            kind="dag",
        ),
    ]
    for i in (0, 1):
        loop_events += [
            event(
                "task_started",
                4 + i,
                task_id=f"i{i}",
                display_name=f"for-loop-1-iteration-{i}",
                task_name=f"iteration-{i}",
                iteration=i,
                parent="for-loop-1",
                kind="dag",
            ),
            event(
                "task_started",
                5 + i,
                task_id=f"s{i}",
                pod_name="sq" + "-2" * i,
                display_name="sq",
                task_name="sq",
                parent=f"for-loop-1.iteration-{i}",
                kind="container",
            ),
        ]
    loop_events += [
        event("task_finished", 7, task_id="s0", state="SUCCEEDED"),
        event("task_finished", 8, task_id="i0", state="SUCCEEDED"),
        event("task_finished", 9, task_id="s1", state="SUCCEEDED"),
        event("task_finished", 10, task_id="i1", state="SUCCEEDED"),
        event("task_finished", 11, task_id="L", state="SUCCEEDED"),
        event("task_started", 12, task_id="a", pod_name="after", display_name="after", parent=""),
    ]
    run = run_of(tmp_path, LOOP_SPEC, loop_events)
    loop = "for-loop-1"
    items = [f"{loop}.iteration-iterations({i}:{i})" for i in (0, 1)]
    bodies = [f"{item}.iteration-item" for item in items]
    names = [
        *("", "make-driver", "make", "make.executor", "after-driver", "after", "after.executor"),
        *(loop, f"{loop}.iteration-driver", f"{loop}.iteration-iterations", *items, *bodies),
        *(f"{item}.iteration-item-driver" for item in items),
        *(f"{body}.sq{suffix}" for body in bodies for suffix in ("-driver", "", ".executor")),
    ]
    nodes = nodes_named(run, names)
    # no driver for the loop: make's pod leads to the loop's own node
    assert child_names(run, nodes["make.executor"]) == hashes(run, loop)
    assert child_names(run, nodes[loop]) == hashes(run, f"{loop}.iteration-driver")
    assert child_names(run, nodes[f"{loop}.iteration-iterations"]) == hashes(run, *items)
    for item, body in zip(items, bodies, strict=True):
        assert nodes[item]["display_name"] == item.rpartition(".")[2]
        assert child_names(run, nodes[item]) == hashes(run, f"{item}.iteration-item-driver")
        assert child_names(run, nodes[f"{item}.iteration-item-driver"]) == hashes(run, body)
        assert child_names(run, nodes[body]) == hashes(run, f"{body}.sq-driver")
        assert child_names(run, nodes[f"{body}.sq.executor"]) == hashes(run, "after-driver")
        assert nodes[f"{body}.sq"]["display_name"] == "sq"
    # each iteration and the loop carry their own states and times
    second = nodes[items[1]]
    assert (second["state"], second["start_time"], second["end_time"]) == (
        "SUCCEEDED",
        "2026-01-01T00:00:05Z",
        "2026-01-01T00:00:10Z",
    )
    assert nodes[bodies[1]]["end_time"] == "2026-01-01T00:00:10Z"
    assert nodes[loop]["start_time"] == "2026-01-01T00:00:03Z"
    assert nodes[loop]["end_time"] == "2026-01-01T00:00:11Z"
    assert nodes["after"]["state"] == "RUNNING" and nodes["after"]["end_time"] == argo_nodes.NEVER
    # one log link per executor pod, each iteration's to its own file
    workflow = argo_nodes.workflow_name(LOOP_SPEC, "run-1")
    logs = run.directory / "logs"
    for body, file in [(bodies[0], "sq.log"), (bodies[1], "sq-2.log")]:
        node = argo_nodes.node_id(workflow, f"{workflow}.root.{body}.sq.executor")
        link = logs / f"{argo_nodes.executor_pod_name(node)}.log"
        assert link.is_symlink() and link.readlink().name == file
    executors = [n for n in names if n.endswith(".executor")]
    assert len([p for p in logs.iterdir() if p.is_symlink()]) == len(executors) == 4


def test_dag_events_give_dag_nodes_their_states_and_exit_tasks_are_hooks(tmp_path):
    """A branch not taken is Skipped (`when` false in Argo's `executeDAGTask`), SKIPPED in
    KFP (`model.RuntimeState`); a DAG's node has the state and times its events report.
    An exit task is an Argo exit lifecycle hook of the task it follows (`argocompiler/
    dag.go` `DAG`, `exit-hook-<dag>-<task>`): the node `<task node>.onExit`
    (`workflow/common` `GenerateOnExitNodeName`), a child of that node (`runOnExitNode`)."""
    events = [
        event(
            "task_started",
            1,
            task_id="c",
            display_name="condition-1",
            task_name="condition-1",
            parent="",
            kind="dag",
        ),
        event("task_finished", 1, task_id="c", state="SKIPPED"),
        event(
            "task_started",
            2,
            task_id="e",
            display_name="exit-handler-1",
            task_name="exit-handler-1",
            parent="",
            kind="dag",
        ),
        event(
            "task_started",
            3,
            task_id="b",
            pod_name="body",
            display_name="body",
            task_name="body",
            parent="exit-handler-1",
            kind="container",
        ),
        event("task_finished", 4, task_id="b", state="FAILED", error="boom"),
        event("task_finished", 5, task_id="e", state="FAILED", error="task 'body' failed"),
        event(
            "task_started",
            6,
            task_id="r",
            pod_name="report",
            display_name="report",
            task_name="report",
            parent="",
            kind="container",
        ),
        event("task_finished", 7, task_id="r", state="SUCCEEDED"),
    ]
    run = run_of(tmp_path, HOOK_SPEC, events, state="FAILED")
    run.finished_at = T0 + timedelta(seconds=8)
    hook = "exit-handler-1.onExit"
    nodes = nodes_named(
        run,
        [
            *("", "condition-1-driver", "condition-1", "exit-handler-1-driver"),
            *("exit-handler-1", "exit-handler-1.body-driver", "exit-handler-1.body"),
            *("exit-handler-1.body.executor", hook, f"{hook}.report-driver"),
            *(f"{hook}.report", f"{hook}.report.executor"),
        ],
    )
    skipped = nodes["condition-1"]
    assert skipped["state"] == "SKIPPED" and "child_tasks" not in skipped
    assert skipped["start_time"] == skipped["end_time"] == "2026-01-01T00:00:01Z"
    assert nodes["condition-1-driver"]["state"] == "SUCCEEDED"
    handler = nodes["exit-handler-1"]
    assert (handler["state"], handler["start_time"], handler["end_time"]) == (
        "FAILED",
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:05Z",
    )
    assert child_names(run, handler) == hashes(run, "exit-handler-1.body-driver", hook)
    assert nodes[hook]["display_name"] == hook
    assert child_names(run, nodes[hook]) == hashes(run, f"{hook}.report-driver")
    assert nodes[f"{hook}.report.executor"]["state"] == "SUCCEEDED"
    assert "child_tasks" not in nodes["exit-handler-1.body.executor"]  # the hook is no dependent
    workflow = argo_nodes.workflow_name(HOOK_SPEC, "run-1")
    node = argo_nodes.node_id(workflow, f"{workflow}.root.{hook}.report.executor")
    link = run.directory / "logs" / f"{argo_nodes.executor_pod_name(node)}.log"
    assert link.is_symlink() and link.readlink().name == "report.log"


def test_a_cached_task_has_a_skipped_executor_and_no_log(tmp_path):
    """A task the driver found in the cache: its executor's `when: cached-decision != true`
    is false (backend/src/v2/compiler/argocompiler/container.go), so Argo skips the pod
    (KFP: SKIPPED) while the task's DAG node succeeds; no log is linked for the pod."""
    events = [
        event("task_started", 1, task_id="1", pod_name="a", display_name="a", cached=True),
        event("task_finished", 1, task_id="1", state="SUCCEEDED"),
    ]
    run = progress(tmp_path, events)
    details = run.task_details()
    states = {(d["display_name"], d["state"]) for d in details}
    assert ("a", "SUCCEEDED") in states and ("executor", "SKIPPED") in states
    assert not (run.directory / "logs").exists() or not any((run.directory / "logs").iterdir())
