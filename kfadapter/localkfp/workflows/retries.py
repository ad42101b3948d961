"""Retry nodes (retryStrategy attempts, backoff) and the pods a retried run carries forward."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfadapter.localkfp.attempts import TaskResult
from kfadapter.localkfp.workflows.expressions import substitute_all
from kfadapter.localkfp.workflows.nodes import ERROR, FAILED, POD, RETRY, SUCCEEDED, NodeTree
from kfadapter.localkfp.workflows.results import Result, encoded, result_from

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class Retries:
    """The runner's Retry nodes and carried-forward pods (a part of `WorkflowRunner`)."""

    workflow: str
    tree: NodeTree

    if TYPE_CHECKING:

        def _pod(
            self,
            template: Mapping[str, Any],
            node_name: str,
            boundary: str | None,
            values: Mapping[str, str],
            artifacts: Mapping[str, Path | bytes],
            attempt: int | None,
        ) -> Result: ...

        def _error_node(
            self, node_name: str, template: Mapping[str, Any], boundary: str | None, message: str
        ) -> Result: ...

        def _failed(self, display_name: str, message: str) -> None: ...

    def _carried(self, node_name: str) -> TaskResult | None:
        """The previous attempt's result of a pod (or Retry node) that succeeded, which a
        retry keeps; the exit handler's nodes run again (GenerateRetryExecution)."""
        earlier = self.tree.previous(node_name)
        if earlier is None or earlier.state != SUCCEEDED:
            return None
        if node_name.startswith(f"{self.workflow}.onExit"):
            return None
        return earlier

    def _retried(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        values: Mapping[str, str],
        artifacts: Mapping[str, Path | bytes],
    ) -> Result:
        """A Retry node and its attempts `<node>(<n>)` (Argo's `executeTemplate` with a
        retryStrategy): at most `limit` retries, after the strategy's backoff."""
        strategy = substitute_all(dict(template["retryStrategy"]), values)
        try:
            limit = int(str(strategy.get("limit", 0)))
        except ValueError:
            return self._error_node(
                node_name, template, boundary, "retryStrategy.limit is not a number"
            )
        policy = str(strategy.get("retryPolicy") or "OnFailure")
        backoff = strategy.get("backoff") or {}
        name = str(template.get("name"))
        earlier = self._carried(node_name)
        if earlier is not None:  # its succeeded attempt with it
            attempt_node = f"{node_name}({earlier.outputs.get('attempt', 0)})"
            self.tree.carried(node_name, RETRY, name, boundary)
            self.tree.add_child(node_name, attempt_node)
            if self.tree.previous(attempt_node) is not None:
                self.tree.carried(attempt_node, POD, name, boundary)
            return result_from(earlier.outputs, [attempt_node])
        self.tree.start(node_name, RETRY, name, boundary)
        result = Result(FAILED, [node_name])
        for attempt in range(limit + 1):
            child = f"{node_name}({attempt})"
            self.tree.add_child(node_name, child)
            result = self._pod(template, child, boundary, values, artifacts, attempt)
            if result.phase == SUCCEEDED or attempt == limit:
                break
            if policy == "OnError" and result.phase != ERROR:
                break
            time.sleep(backoff_seconds(backoff, attempt))
        outputs = {**encoded(result), "attempt": attempt} if result.phase == SUCCEEDED else {}
        self.tree.finish(node_name, result.phase, result.message, outputs)
        if result.phase != SUCCEEDED:
            self._failed(self.tree.get(node_name).display_name, result.message)  # type: ignore[union-attr]
        return dataclasses.replace(result, outbound=[f"{node_name}({attempt})"])


def backoff_seconds(backoff: Mapping[str, Any], attempt: int) -> float:
    """Seconds before retry `attempt + 1`: duration * factor^attempt, at most maxDuration."""
    duration = _seconds(backoff.get("duration"))
    factor = float(str(backoff.get("factor") or 1))
    delay = duration * factor**attempt
    ceiling = _seconds(backoff.get("maxDuration")) if backoff.get("maxDuration") else None
    return min(delay, ceiling) if ceiling is not None else delay


def _seconds(text: Any) -> float:
    """A duration (`10`, `10s`, `1m30s`, `500ms`) in seconds."""
    if text is None:
        return 0.0
    value = str(text).strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * units[unit] for number, unit in _DURATION.findall(value))
