#!/usr/bin/env bash
# The system programs the full test suite starts besides Python packages:
# a PostgreSQL server (tracking-store tests), Chromium (the web UI's browser tests), and
# helm and kubectl (render the deploy/ manifests). Installs the missing ones with Debian's apt
# (as root, or through sudo); prints what is missing and exits 1 when it cannot.
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' > /dev/null || missing+=(postgresql)
command -v chromium > /dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo > /dev/null; then
    sudo=(sudo)
  else
    echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
  echo "+ apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    "${missing[@]}" > /dev/null
fi
# Debian bookworm packages neither helm nor kubectl: k8s-tools.sh brings them.
"$(dirname "$0")/k8s-tools.sh"
