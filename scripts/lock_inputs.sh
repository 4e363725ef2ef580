#!/usr/bin/env bash
# The sha256 of the top-level pins the lock files are compiled from (scripts/lock.sh records
# it in each lock).   scripts/lock_inputs.sh [--check]
# --check: fail, saying what to do, when any lock was made from other pins (used before
# installing .venv and before building the images).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
inputs=$(cat requirements-dev.txt preprocess/requirements.txt trainer/requirements.txt \
  tracking/requirements.txt s3/requirements.txt | sha256sum | cut -d' ' -f1)
if [[ ${1:-} != --check ]]; then
  echo "$inputs"
  exit 0
fi
for lock in requirements.lock preprocess/requirements.lock trainer/requirements.lock \
  tracking/requirements.lock s3/requirements.lock; do
  if [[ $(sed -n '1s/^# inputs sha256: //p' "$lock") != "$inputs" ]]; then
    echo "sluice: the pins in requirements-dev.txt or a service's requirements.txt changed since" \
      "$lock was made; run scripts/lock.sh and commit the locks" >&2
    exit 1
  fi
done
