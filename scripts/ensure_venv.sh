#!/usr/bin/env bash
# Create or refresh .venv from requirements.lock (every package pinned, with hashes); a no-op
# when it is up to date. Stale means: missing, or the lock changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SLUICE_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
LOCK=$ROOT/requirements.lock
STAMP=$VENV/.sluice-requirements.sha256
"$ROOT/scripts/lock_inputs.sh" --check
wanted=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && $(cat "$STAMP") == "$wanted" ]]; then
  exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "sluice: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
echo "sluice: installing the Python environment in $VENV (first run takes a few minutes)..."
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
# The lock is complete (every dependency is in it), so pip installs exactly it: no resolving.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  --no-deps -r "$LOCK"
# Exactly the lock: packages an earlier install left behind (a pin since removed) go.
"$VENV/bin/python" - "$LOCK" <<'PY'
import re, subprocess, sys
from importlib import metadata

with open(sys.argv[1], encoding="utf-8") as handle:
    locked = {re.sub(r"[-_.]+", "-", m.group(1)).lower() for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", handle.read(), re.M)}
installer = {"pip", "setuptools", "wheel"}  # the venv's own tools
extra = sorted({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()} - locked - installer)
if extra:
    print("sluice: removing packages not in the lock:", " ".join(extra))
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *extra], check=True)
PY
echo "$wanted" > "$STAMP"
echo "sluice: Python environment ready"
