#!/usr/bin/env bash
# Restore a backup (scripts/backup.sh) into a fresh stack, start it, and check it against the
# backup's manifest (docs/operations.md).
#   scripts/restore.sh [--docker|--local] DIR
# Docker mode: a Compose project with no data (e.g. a new COMPOSE_PROJECT_NAME); local mode: a
# new SLUICE_HOME.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=$(command -v python3 || command -v python || echo "$ROOT/.venv/bin/python")
exec "$PYTHON" "$ROOT/scripts/backup.py" restore "$@"
