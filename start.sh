#!/usr/bin/env bash
# Start the Sluice stack. Compose when a Docker engine answers, local processes otherwise.
#   ./start.sh            auto-detect
#   ./start.sh --local    local processes (MLflow on SQLite, services under gunicorn)
#   ./start.sh --docker   the Docker Compose stack
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${SLUICE_MODE:-auto}
for arg in "$@"; do
  case $arg in
    --local) mode=local ;;
    --docker) mode=docker ;;
    -h | --help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "start.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [[ $mode == auto ]] && "$ROOT/scripts/local.sh" status 2>/dev/null | grep -qE ': (running|starting|stopping)'; then
  # A local stack is up (or on its way up or down): starting again completes it, even if
  # Docker answers now.
  mode=local
fi
if [[ $mode == auto ]]; then
  if command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; then
    mode=docker
  else
    mode=local
  fi
fi
if [[ $mode == docker ]]; then
  exec "$ROOT/scripts/compose.sh" up
fi
exec "$ROOT/scripts/local.sh" start
