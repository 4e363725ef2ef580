#!/usr/bin/env bash
# Run the whole test suite: sets up .venv if needed, then pytest (extra args go to pytest).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/ensure_venv.sh"
"$ROOT/scripts/ensure_browser.sh"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check .
exec "$ROOT/.venv/bin/python" -m pytest "$@"
