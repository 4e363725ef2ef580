#!/usr/bin/env bash
# Back up the running stack into a new directory (docs/operations.md).
#   scripts/backup.sh [--docker|--local] [DIR]     default DIR: backups/sluice-<UTC time>
# Docker mode needs only Python 3 and Compose on the host; local mode uses .venv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=$(command -v python3 || command -v python || echo "$ROOT/.venv/bin/python")
exec "$PYTHON" "$ROOT/scripts/backup.py" backup "$@"
