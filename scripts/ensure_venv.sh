#!/usr/bin/env bash
# Create or refresh .venv from requirements.lock (every package pinned, with hashes); a no-op
# when it is up to date. Stale means: missing, or the lock changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SLUICE_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
LOCK=$ROOT/requirements.lock
STAMP=$VENV/.sluice-requirements.sha256
recorded=$(sed -n '1s/^# inputs sha256: //p' "$LOCK")
if [[ $recorded != "$("$ROOT/scripts/lock_inputs.sh")" ]]; then
  echo "sluice: the pins in requirements-dev.txt or a service's requirements.txt changed since" \
    "requirements.lock was made; run scripts/lock.sh and commit the locks" >&2
  exit 1
fi
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
echo "$wanted" > "$STAMP"
echo "sluice: Python environment ready"
