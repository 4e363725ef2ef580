#!/usr/bin/env bash
# Refresh the lock files from the top-level pins (requirements-dev.txt and each service's
# requirements.txt): every transitive package pinned, with hashes.
#   requirements.lock             .venv (local mode, tests, bench): everything below
#   {preprocess,trainer,tracking,s3}/requirements.lock   each image, with the same versions
# Run it after changing a pin, and commit the locks; the .venv and the images install from them
# only (pip --require-hashes --no-deps). Needs the network (PyPI).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOOLS=${SLUICE_TOOLS_VENV:-$ROOT/.tools}
UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3}
if [[ $("$TOOLS/bin/uv" --version 2>/dev/null) != "uv $UV_VERSION"* ]]; then
  [[ -x $TOOLS/bin/python ]] || "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
inputs=$(scripts/lock_inputs.sh)
compile() { # OUTPUT INPUT [uv options...]
  local output=$1 input=$2
  shift 2
  # uv prefers the versions already in the output file: adding a pin does not move the others
  # (delete a lock to take every package's newest version that fits).
  [[ -f $output ]] && cp "$output" "$output.new"
  # The index is PyPI itself (not a machine's mirror), so the hashes are PyPI's.
  # xgboost's NCCL (~470 MB) serves multi-GPU training only; everything here runs on CPU.
  "$TOOLS/bin/uv" pip compile "$input" "$@" --quiet --generate-hashes --universal \
    --python-version 3.11 --index-url https://pypi.org/simple \
    --no-emit-package nvidia-nccl-cu12 --custom-compile-command scripts/lock.sh -o "$output.new"
  { echo "# inputs sha256: $inputs"; cat "$output.new"; } >"$output"
  rm "$output.new"
}
compile requirements.lock requirements-dev.txt
for service in preprocess trainer tracking s3; do
  compile "$service/requirements.lock" "$service/requirements.txt" --constraint requirements.lock
done
echo "sluice: locks refreshed (inputs sha256 $inputs); commit them"
