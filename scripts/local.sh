#!/usr/bin/env bash
# Local mode: the MLflow tracking server, the trainer and preprocess as local processes.
# Embedded stores by default (SQLite and directories in SLUICE_HOME); MLFLOW_BACKEND_STORE_URI,
# MLFLOW_ARTIFACTS_DESTINATION and MONITORING_DB_URL (or SLUICE_DB_*) point it at others.
#   scripts/local.sh start | stop [--purge] | status
# Every process runs in its own session; its pid file is the process-group id stop.sh kills.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SLUICE_VENV:-$ROOT/.venv}
SLUICE_HOME=$(realpath -m "${SLUICE_HOME:-$ROOT/.sluice}")
BIND_HOST=${BIND_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
TRAINER_PORT=${TRAINER_PORT:-8080}
PREPROCESS_PORT=${PREPROCESS_PORT:-8050}
START_TIMEOUT=${START_TIMEOUT:-90}
SERVICES=(mlflow trainer preprocess)
RUN=$SLUICE_HOME/run
LOGS=$SLUICE_HOME/logs

port_of() {
  case $1 in mlflow) echo "$MLFLOW_PORT" ;; trainer) echo "$TRAINER_PORT" ;; preprocess) echo "$PREPROCESS_PORT" ;; esac
}

health_url() { echo "http://127.0.0.1:$(port_of "$1")/health"; }

# The pid in $RUN/NAME.pid if that process is alive and is the one we started.
live_pid() {
  local file=$RUN/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  grep -qa -- "$SLUICE_HOME\|$ROOT" "/proc/$pid/environ" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

port_busy() {
  "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
s = socket.socket()
# Like the servers, ignore TIME_WAIT leftovers: only a live listener makes a port busy.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}

healthy() { "$VENV/bin/python" -c "import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen('$1', timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)"; }

launch() {
  local name=$1
  local gunicorn=("$VENV/bin/gunicorn" --chdir "$ROOT" --no-control-socket --config python:sluice_common.gunicorn_conf)
  case $name in
    mlflow)
      # MLflow's GenAI job runner (a huey consumer, ~280 MB) is not used by Sluice.
      export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
      # tracking/serve.py puts MLflow's basic-auth app in front and then runs mlflow server.
      # Its stores: MLFLOW_BACKEND_STORE_URI (or the SLUICE_DB_* database) and
      # MLFLOW_ARTIFACTS_DESTINATION when set, else SQLite and a directory in SLUICE_HOME.
      export SLUICE_MLFLOW_STATE=$SLUICE_HOME
      # Sluice's services' Prometheus directory is theirs: MLflow's own prometheus_client would
      # write into it (or fail on a stale one).
      set -- env -u PROMETHEUS_MULTIPROC_DIR -u SLUICE_PROMETHEUS_DIR_MADE \
        "$VENV/bin/python" -m tracking.serve --serve-artifacts \
        --host "$BIND_HOST" --port "$MLFLOW_PORT" --workers "${MLFLOW_WORKERS:-1}" ;;
    trainer)
      export MLFLOW_TRACKING_URI=${TRAINER_MLFLOW_URI:-http://127.0.0.1:$MLFLOW_PORT}
      export TRAINER_STATE_DIR=${TRAINER_STATE_DIR:-$SLUICE_HOME/trainer}
      set -- "${gunicorn[@]}" --bind "$BIND_HOST:$TRAINER_PORT" \
        --workers "${TRAINER_WORKERS:-1}" --threads "${TRAINER_THREADS:-8}" \
        --timeout "${TRAINER_TIMEOUT:-3600}" 'trainer:create_app()' ;;
    preprocess)
      export TRAINER_URL=${TRAINER_URL:-http://127.0.0.1:$TRAINER_PORT}
      set -- "${gunicorn[@]}" --bind "$BIND_HOST:$PREPROCESS_PORT" \
        --workers "${PREPROCESS_WORKERS:-2}" --threads "${PREPROCESS_THREADS:-8}" \
        --timeout "${PREPROCESS_TIMEOUT:-3600}" 'preprocess:create_app()' ;;
  esac
  # MLflow's account for the trainer; without MLFLOW_TRACKING_PASSWORD, a password generated
  # on first start into this file (mode 0600) that the tracking server and the trainer share.
  export MLFLOW_TRACKING_PASSWORD_FILE=${MLFLOW_TRACKING_PASSWORD_FILE:-$SLUICE_HOME/mlflow.password}
  # The trainer creates this token on first start; preprocess presents it with every Arrow body.
  export SLUICE_INTERNAL_TOKEN_FILE=${SLUICE_INTERNAL_TOKEN_FILE:-$SLUICE_HOME/internal.token}
  SLUICE_HOME=$SLUICE_HOME PATH="$VENV/bin:$PATH" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

start() {
  "$ROOT/scripts/ensure_venv.sh"
  mkdir -p "$RUN" "$LOGS"
  export SLUICE_GIT_COMMIT=${SLUICE_GIT_COMMIT:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)}
  local started=() name
  for name in "${SERVICES[@]}"; do
    if live_pid "$name" >/dev/null; then
      continue
    fi
    if port_busy "$(port_of "$name")"; then
      echo "sluice: port $(port_of "$name") for $name is taken by another program;" \
        "free it or set ${name^^}_PORT" >&2
      exit 1
    fi
    started+=("$name")
  done
  if [[ ${#started[@]} -eq 0 ]]; then
    echo "sluice: already running (local mode, SLUICE_HOME=$SLUICE_HOME); nothing changed"
    print_urls
    return 0
  fi
  for name in "${started[@]}"; do
    launch "$name"
  done
  local deadline=$((SECONDS + START_TIMEOUT))
  for name in "${started[@]}"; do
    until healthy "$(health_url "$name")"; do
      # Alive is enough here (we just started it): its /proc/PID/environ, which live_pid
      # reads, is briefly unreadable while tracking/serve.py execs mlflow.
      if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || ((SECONDS > deadline)); then
        echo "sluice: $name did not become healthy; last lines of $LOGS/$name.log:" >&2
        tail -n 30 "$LOGS/$name.log" >&2
        stop_services "${started[@]}"
        exit 1
      fi
      sleep 0.2
    done
  done
  echo "sluice: started ${started[*]} (local mode, SLUICE_HOME=$SLUICE_HOME)"
  print_urls
}

print_urls() {
  echo "  preprocess  http://127.0.0.1:$PREPROCESS_PORT/analyze?phase=dev|prod"
  echo "  trainer     http://127.0.0.1:$TRAINER_PORT/ml?phase=dev|prod"
  local where="in ${MLFLOW_TRACKING_PASSWORD_FILE:-$SLUICE_HOME/mlflow.password}"
  [[ -z ${MLFLOW_TRACKING_PASSWORD:-} ]] || where="the one set in MLFLOW_TRACKING_PASSWORD"
  echo "  MLflow UI   http://127.0.0.1:$MLFLOW_PORT  (user ${MLFLOW_TRACKING_USERNAME:-sluice}, password $where)"
}

stop_services() {
  local name pid
  for name in "$@"; do
    pid=$(live_pid "$name") || { rm -f "$RUN/$name.pid"; continue; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "$@"; do
    [[ -f $RUN/$name.pid ]] || continue
    pid=$(cat "$RUN/$name.pid")
    for _ in $(seq 1 100); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
}

status() {
  local name pid
  for name in "${SERVICES[@]}"; do
    if pid=$(live_pid "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
  done
}

case ${1:-start} in
  start) start ;;
  stop)
    if [[ ! -d $RUN && ${2:-} != --purge ]]; then
      [[ ${SLUICE_QUIET_STOP:-} ]] || echo "sluice: nothing running in local mode ($SLUICE_HOME)"
      exit 0
    fi
    stop_services preprocess trainer mlflow
    if [[ ${2:-} == --purge ]]; then
      rm -rf "$SLUICE_HOME"
      echo "sluice: stopped and deleted $SLUICE_HOME"
    else
      echo "sluice: stopped (data kept in $SLUICE_HOME)"
    fi ;;
  status) status ;;
  *) echo "usage: $0 start|stop [--purge]|status" >&2; exit 2 ;;
esac
