#!/usr/bin/env bash
# Create or refresh .venv from the pinned requirements; a no-op when it is up to date.
# Stale means: missing, or the requirements files changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SLUICE_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.sluice-requirements.sha256
wanted=$(cat "$ROOT"/requirements-dev.txt "$ROOT"/preprocess/requirements.txt \
  "$ROOT"/trainer/requirements.txt "$ROOT"/tracking/requirements.txt | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && $(cat "$STAMP") == "$wanted" ]]; then
  exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "sluice: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
echo "sluice: installing the Python environment in $VENV (first run takes a few minutes)..."
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
echo "$wanted" > "$STAMP"
echo "sluice: Python environment ready"
