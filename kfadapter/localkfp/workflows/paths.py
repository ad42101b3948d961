"""Container paths of a pod's artifacts and parameter files, mapped to the pod's own directory.

In a pod, Argo's executor places each input artifact at its `path` before the main
container starts, and after it ends reads each output parameter's `valueFrom.path` and
saves each output artifact's `path` (`workflow/executor/executor.go` `StageFiles`,
`LoadArtifacts`, `SaveParameters`, `SaveArtifacts`). Here the pod is a process on this
machine, so each such path P is mapped to `<pod dir>/fs/P`, and every occurrence of P in
the command, args, script source and environment values is rewritten (longest path
first, so `/tmp/outputs/a/data` is not cut by `/tmp/outputs/a`); a path below a declared
one (`/tmp/outputs/model/weights` under an artifact `/tmp/outputs/model`) follows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any


class PathMap:
    """The container paths of one pod and where they are on this machine."""

    def __init__(self, pod_directory: Path, container_paths: Iterable[str]) -> None:
        self.root = pod_directory / "fs"
        self._paths = sorted(
            {str(PurePosixPath(path)) for path in container_paths if path}, key=len, reverse=True
        )

    def local(self, container_path: str) -> Path:
        """Where a container path is on this machine."""
        relative = str(PurePosixPath(container_path)).lstrip("/")
        return self.root / relative

    def rewrite(self, text: str) -> str:
        """The text with each declared container path replaced by its local path."""
        if not self._paths or "/" not in text:
            return text
        placeholders: list[tuple[str, str]] = []
        for index, path in enumerate(self._paths):
            if path in text:
                marker = f"\x00{index}\x00"
                text = text.replace(path, marker)
                placeholders.append((marker, str(self.local(path))))
        for marker, local in placeholders:
            text = text.replace(marker, local)
        return text

    def rewrite_all(self, value: Any) -> Any:
        """`rewrite` in every string of a JSON-like value."""
        if isinstance(value, str):
            return self.rewrite(value)
        if isinstance(value, list):
            return [self.rewrite_all(item) for item in value]
        if isinstance(value, dict):
            return {key: self.rewrite_all(item) for key, item in value.items()}
        return value
