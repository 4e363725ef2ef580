#!/usr/bin/env bash
# Stop what start.sh started and keep the data; --purge deletes the data too.
#   ./stop.sh [--purge] [--local|--docker]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
purge=()
mode=auto
for arg in "$@"; do
  case $arg in
    --purge) purge=(--purge) ;;
    --local) mode=local ;;
    --docker) mode=docker ;;
    -h | --help) sed -n '2,3p' "$0"; exit 0 ;;
    *) echo "stop.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [[ $mode != docker ]]; then
  # In auto mode, say nothing about local mode when it was never started.
  quiet=$([[ $mode == auto ]] && echo 1 || true)
  SLUICE_QUIET_STOP=$quiet "$ROOT/scripts/local.sh" stop "${purge[@]}"
fi
if [[ $mode != local && -x $ROOT/scripts/compose.sh ]] && command -v docker >/dev/null 2>&1 \
  && timeout 5 docker info >/dev/null 2>&1; then
  "$ROOT/scripts/compose.sh" down "${purge[@]}"
fi
