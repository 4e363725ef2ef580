#!/usr/bin/env bash
# Docker mode: the Compose stack (docker-compose.yml) on this machine's Docker engine.
#   scripts/compose.sh up | down [--purge] | ps
# PostgreSQL (db) holds MLflow's store and monitoring; COMPOSE_PROFILES=s3 adds an S3 store.
# Uses `docker compose` (v2) when it works, else `docker-compose` (v1). Honours
# COMPOSE_PROJECT_NAME and the variables in .env.example (from the environment or ./.env).
# `up` builds, starts detached and waits for every /health on the published ports (v1 has no
# `up --wait`); `down` keeps the volumes, `down --purge` deletes them too.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# Same defaults as docker-compose.yml: the ports we poll are the ports Compose publishes.
# A .env file feeds Compose, so read the ports from it too (the environment wins, as in Compose).
env_default() {
  local name=$1 default=$2 line
  if [[ -n ${!name:-} ]]; then
    echo "${!name}"
    return
  fi
  if [[ -f .env ]] && line=$(grep -E "^[[:space:]]*${name}=" .env | tail -n 1); then
    line=${line#*=}
    line=${line%\"}; line=${line#\"}; line=${line%\'}; line=${line#\'}
    [[ -n $line ]] && { echo "$line"; return; }
  fi
  echo "$default"
}
MLFLOW_PORT=$(env_default MLFLOW_PORT 5000)
MLFLOW_UI=$(env_default MLFLOW_UI 0)
TRAINER_PORT=$(env_default TRAINER_PORT 8080)
PREPROCESS_PORT=$(env_default PREPROCESS_PORT 8050)
BIND_HOST=$(env_default BIND_HOST 127.0.0.1)
# Poll where the ports are published; a wildcard bind answers on loopback.
case $BIND_HOST in 0.0.0.0 | "::" | "[::]") POLL_HOST=127.0.0.1 ;; *) POLL_HOST=$BIND_HOST ;; esac
START_TIMEOUT=${START_TIMEOUT:-300}
SERVICES=(db mlflow trainer preprocess)
# COMPOSE_PROFILES=s3 (environment or .env) adds the s3 service; MLflow puts the artifacts there.
[[ ,$(env_default COMPOSE_PROFILES ""), == *,s3,* ]] && SERVICES=(db s3 mlflow trainer preprocess)
FILES=(-f "$ROOT/docker-compose.yml")
# MLflow is published only on request; unpublished, the trainer's health (it waits for
# MLflow's) stands for it.
POLLED=(trainer preprocess)
if [[ $MLFLOW_UI == 1 ]]; then
  FILES+=(-f "$ROOT/docker-compose.mlflow-ui.yml")
  POLLED=(mlflow trainer preprocess)
fi

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "sluice: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi
compose() { "${COMPOSE[@]}" "${FILES[@]}" "$@"; }

port_of() {
  case $1 in mlflow) echo "$MLFLOW_PORT" ;; trainer) echo "$TRAINER_PORT" ;; preprocess) echo "$PREPROCESS_PORT" ;; esac
}

# Python is in every image and on every machine that runs Sluice; curl is not.
PYTHON=$(command -v python3 || command -v python || echo "$ROOT/.venv/bin/python")
healthy() { "$PYTHON" -c "import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen('$1', timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)"; }

# Whether the service's container crashed, restarted or was marked unhealthy: no point waiting.
failed() {
  local id status restarts health
  id=$(compose ps -q "$1" 2>/dev/null | head -n 1)
  [[ -n $id ]] || return 1
  read -r status restarts health < <(docker inspect -f \
    '{{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' \
    "$id" 2>/dev/null) || return 1
  [[ $status == exited || $status == dead || ${restarts:-0} != 0 || ${health:-} == unhealthy ]]
}

print_urls() {
  echo "  console     http://127.0.0.1:$PREPROCESS_PORT/"
  echo "  preprocess  http://127.0.0.1:$PREPROCESS_PORT/analyze?phase=dev|prod"
  echo "  API docs    http://127.0.0.1:$PREPROCESS_PORT/docs  (OpenAPI: /openapi.json)"
  echo "  trainer     http://127.0.0.1:$TRAINER_PORT/ml?phase=dev|prod"
  if [[ $MLFLOW_UI == 1 ]]; then
    echo "  MLflow UI   http://127.0.0.1:$MLFLOW_PORT  (user $(env_default MLFLOW_TRACKING_USERNAME sluice);" \
      "password as set in MLFLOW_TRACKING_PASSWORD, or generated:" \
      "docker-compose exec mlflow cat /run/mlflow-account/password)"
  else
    echo "  MLflow UI   not published (MLFLOW_UI=1 publishes it on $BIND_HOST:$MLFLOW_PORT)"
  fi
}

# Show why the stack did not come up, then stop: what started is left for inspection.
give_up() {
  echo "sluice: $1; last lines of the log:" >&2
  compose ps >&2 || true
  compose logs --tail=40 ${2:+"$2"} >&2 || true
  echo "sluice: the stack is left as it is for inspection; scripts/compose.sh down stops it" >&2
  exit 1
}

up() {
  export SLUICE_GIT_COMMIT=${SLUICE_GIT_COMMIT:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)}
  "$ROOT/scripts/lock_inputs.sh" --check  # the images install only the locks
  # The data root shared by the trainer and the dask workers: made here when missing, or
  # Docker would make it owned by root, and the services (uid 10001) could not write outputs.
  local data_dir=${SLUICE_DATA_DIR:-./data}
  [[ $data_dir == /* ]] || data_dir="$ROOT/$data_dir"
  if [[ ! -e $data_dir ]]; then
    mkdir -p "$data_dir" && chmod 1777 "$data_dir"
  fi
  compose build
  # v1 blocks in `up -d` until each depends_on condition holds, and waits forever on a container
  # that crash-loops; so it runs in the background while we poll, and a crash ends the wait.
  compose up -d &
  local up_pid=$! up_rc="" started=$SECONDS deadline=$((SECONDS + START_TIMEOUT)) name
  for name in "${POLLED[@]}"; do
    until healthy "http://$POLL_HOST:$(port_of "$name")/health"; do
      if [[ -z $up_rc ]] && ! kill -0 "$up_pid" 2>/dev/null; then
        wait "$up_pid" && up_rc=0 || up_rc=$?
      fi
      if [[ ${up_rc:-0} != 0 ]]; then
        give_up "compose up failed (exit $up_rc) while $name was starting"
      elif ((SECONDS > deadline)) || failed "$name"; then
        [[ -n $up_rc ]] || kill "$up_pid" 2>/dev/null || true
        give_up "$name did not become healthy (waited $((SECONDS - started))s)" "$name"
      fi
      sleep 1
    done
  done
  [[ -n $up_rc ]] || wait "$up_pid" || give_up "compose up failed"
  echo "sluice: started ${SERVICES[*]} in $((SECONDS - started))s" \
    "(docker mode, project ${COMPOSE_PROJECT_NAME:-$(basename "$ROOT")})"
  print_urls
}

case ${1:-up} in
  up) up ;;
  down)
    if [[ ${2:-} == --purge ]]; then
      compose down -v --remove-orphans
      echo "sluice: stopped and deleted the volumes"
    else
      compose down --remove-orphans
      echo "sluice: stopped (data kept in the Compose volumes)"
    fi ;;
  ps) compose ps ;;
  *) echo "usage: $0 up|down [--purge]|ps" >&2; exit 2 ;;
esac
