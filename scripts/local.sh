#!/usr/bin/env bash
# Local mode: the MLflow tracking server, the trainer and preprocess as local processes.
# Embedded stores by default (SQLite and directories in SLUICE_HOME); MLFLOW_BACKEND_STORE_URI,
# MLFLOW_ARTIFACTS_DESTINATION and MONITORING_DB_URL (or SLUICE_DB_*) point it at others.
#   scripts/local.sh start | stop [--purge] | status
# Every process runs in its own session; its pid file is the process-group id stop.sh kills.
# Everything it writes (state, logs, pid files) is for this account only (umask 077).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SLUICE_VENV:-$ROOT/.venv}
SLUICE_HOME=$(realpath -m "${SLUICE_HOME:-$ROOT/.sluice}")
BIND_HOST=${BIND_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
TRAINER_PORT=${TRAINER_PORT:-8080}
PREPROCESS_PORT=${PREPROCESS_PORT:-8050}
START_TIMEOUT=${START_TIMEOUT:-90}
# gunicorn's graceful timeout: a stop lets requests in flight finish for this long. stop (and
# start, for a service still stopping) waits this and a margin before killing what is left.
GRACEFUL_TIMEOUT=${GRACEFUL_TIMEOUT:-30}
STOP_WAIT=$((GRACEFUL_TIMEOUT + 5))
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

# Whether URL answers 200; if not, says what it answered (preprocess: why it is not ready).
healthy() {
  "$VENV/bin/python" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except urllib.error.HTTPError as err:
    print(err.code, err.read(300).decode("utf-8", "replace"))
except Exception as err:
    print(err)
sys.exit(1)
PY
}

# Whether the service still serves its port. gunicorn's master closes its listening socket as
# soon as it is told to stop (its workers keep theirs until their requests are done), so the
# master, the pid file's process, must hold one. MLflow's uvicorn closes its own at once.
serving() {
  [[ $1 != mlflow ]] || { port_busy "$MLFLOW_PORT"; return; }
  "$VENV/bin/python" - "$2" "$(port_of "$1")" <<'PY'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
listening = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    if os.path.exists(table):
        with open(table) as rows:
            for field in (row.split() for row in list(rows)[1:]):
                if field[3] == "0A" and int(field[1].rsplit(":", 1)[1], 16) == port:
                    listening.add(f"socket:[{field[9]}]")
try:
    fds = os.listdir(f"/proc/{pid}/fd")
except OSError:
    sys.exit(1)
for fd in fds:
    try:
        if os.readlink(f"/proc/{pid}/fd/{fd}") in listening:
            sys.exit(0)
    except OSError:
        pass
sys.exit(1)
PY
}

# Whether a process of group $1 is alive (a zombie only waits to be reaped).
group_alive() {
  kill -0 -- "-$1" 2>/dev/null || return 1
  local file line state pgrp
  for file in /proc/[0-9]*/stat; do
    { read -r line <"$file"; } 2>/dev/null || continue
    read -r state _ pgrp _ <<<"${line##*) }"
    [[ $pgrp == "$1" && $state != Z ]] && return 0
  done
  return 1
}

# Waits until group $1 is gone or SECONDS reaches $2; fails if it is still there.
wait_gone() {
  while group_alive "$1"; do
    ((SECONDS < $2)) || return 1
    sleep 0.1
  done
}

# Removes NAME's pid file and starting mark if they are still PID's: a start that runs while a
# stop waits may have launched NAME anew in the meantime.
forget() {
  local file
  for file in "$RUN/$1.pid" "$RUN/$1.starting"; do
    [[ $(cat "$file" 2>/dev/null) != "$2" ]] || rm -f "$file"
  done
}

# "running PID", "starting PID" (launched, not yet serving), "stopping PID" (told to stop:
# not serving any more, not yet exited) or "stopped".
state_of() {
  local pid
  if ! pid=$(live_pid "$1"); then
    echo stopped
  elif serving "$1" "$pid"; then
    echo "running $pid"
  elif [[ $(cat "$RUN/$1.starting" 2>/dev/null) == "$pid" ]]; then
    echo "starting $pid"
  else
    echo "stopping $pid"
  fi
}

# For start: waits until a service that is starting serves or exits, and until one that is
# stopping is gone (a stop lets requests finish: up to GRACEFUL_TIMEOUT); one that does
# neither in time is killed. Prints "running" or "stopped".
settle() {
  local name=$1 state pid deadline
  read -r state pid < <(state_of "$name")
  if [[ $state == running || $state == stopped ]]; then
    echo "$state"
    return
  fi
  deadline=$((SECONDS + $([[ $state == starting ]] && echo "$START_TIMEOUT" || echo "$STOP_WAIT")))
  echo "sluice: $name (pid $pid) is $state; waiting for it" >&2
  while group_alive "$pid"; do
    if [[ $state == starting ]] && serving "$name" "$pid"; then
      echo running
      return
    fi
    if ((SECONDS >= deadline)); then
      echo "sluice: $name (pid $pid) is still $state; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
      wait_gone "$pid" $((SECONDS + 5)) || true
      break
    fi
    sleep 0.2
  done
  forget "$name" "$pid"
  echo stopped
}

# What an older Sluice left readable by others becomes this account's only. find follows no
# symbolic link below the directories named, so nothing outside them changes.
private_state() {
  local dir
  for dir in "$@"; do
    [[ -n $dir && -d $dir ]] || continue
    find -H "$dir" ! -type l -perm /077 -exec chmod go-rwx -- {} + 2>/dev/null || true
  done
}

launch() {
  local name=$1
  local gunicorn=("$VENV/bin/gunicorn" --chdir "$ROOT" --no-control-socket
    --config python:sluice_common.web.gunicorn_conf --graceful-timeout "$GRACEFUL_TIMEOUT")
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
      # The console links each version's MLflow run to the UI this stack serves.
      export MLFLOW_UI_URL=${MLFLOW_UI_URL:-http://127.0.0.1:$MLFLOW_PORT}
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
  echo $! >"$RUN/$name.starting"  # until start sees it healthy
}

start() {
  "$ROOT/scripts/ensure_venv.sh"
  umask 077 # logs, pid files and every service's state, databases included
  mkdir -p "$RUN" "$LOGS"
  private_state "$SLUICE_HOME" "${TRAINER_STATE_DIR:-}"
  export SLUICE_GIT_COMMIT=${SLUICE_GIT_COMMIT:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)}
  local started=() name
  for name in "${SERVICES[@]}"; do
    [[ $(settle "$name") == running ]] && continue
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
  local deadline=$((SECONDS + START_TIMEOUT)) answer
  # Readiness, in SERVICES' order: preprocess is ready once the trainer answers, so the
  # trainer's /health comes first.
  for name in "${started[@]}"; do
    until answer=$(healthy "$(health_url "$name")"); do
      # Alive is enough here (we just started it): its /proc/PID/environ, which live_pid
      # reads, can be briefly unreadable while a service starts.
      if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || ((SECONDS > deadline)); then
        echo "sluice: $name did not become healthy (${answer:-no answer});" \
          "last lines of $LOGS/$name.log:" >&2
        tail -n 30 "$LOGS/$name.log" >&2
        stop_services "${started[@]}"
        exit 1
      fi
      sleep 0.2
    done
    rm -f "$RUN/$name.starting"
  done
  echo "sluice: started ${started[*]} (local mode, SLUICE_HOME=$SLUICE_HOME)"
  print_urls
}

print_urls() {
  echo "  console     http://127.0.0.1:$PREPROCESS_PORT/"
  echo "  preprocess  http://127.0.0.1:$PREPROCESS_PORT/analyze?phase=dev|prod"
  echo "  API docs    http://127.0.0.1:$PREPROCESS_PORT/docs  (OpenAPI: /openapi.json)"
  echo "  trainer     http://127.0.0.1:$TRAINER_PORT/ml?phase=dev|prod"
  local where="in ${MLFLOW_TRACKING_PASSWORD_FILE:-$SLUICE_HOME/mlflow.password}"
  [[ -z ${MLFLOW_TRACKING_PASSWORD:-} ]] || where="the one set in MLFLOW_TRACKING_PASSWORD"
  echo "  MLflow UI   http://127.0.0.1:$MLFLOW_PORT  (user ${MLFLOW_TRACKING_USERNAME:-sluice}, password $where)"
}

# SIGTERM to each service's process group, then waits for them all (gunicorn lets requests in
# flight finish, up to GRACEFUL_TIMEOUT) and kills what is left.
stop_services() {
  local name pid entry told=() deadline=$((SECONDS + STOP_WAIT))
  for name in "$@"; do
    rm -f "$RUN/$name.starting" # from here on it is stopping
    if pid=$(live_pid "$name"); then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      told+=("$name:$pid")
    else
      rm -f "$RUN/$name.pid"
    fi
  done
  for entry in "${told[@]}"; do
    name=${entry%%:*} pid=${entry#*:}
    wait_gone "$pid" "$deadline" || kill -KILL -- "-$pid" 2>/dev/null || true
    forget "$name" "$pid"
  done
}

status() {
  local name state pid
  for name in "${SERVICES[@]}"; do
    read -r state pid < <(state_of "$name")
    echo "$name: $state${pid:+ (pid $pid)}"
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
