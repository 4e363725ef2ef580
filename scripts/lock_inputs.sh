#!/usr/bin/env bash
# The sha256 of the top-level pins the lock files are compiled from (scripts/lock.sh records
# it in each lock; scripts/ensure_venv.sh refuses a lock that does not match).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cat requirements-dev.txt preprocess/requirements.txt trainer/requirements.txt \
  tracking/requirements.txt | sha256sum | cut -d' ' -f1
