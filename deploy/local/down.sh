#!/usr/bin/env bash
# Stop exactly what up.sh started: the service PIDs in .run/local/*.pid (each checked to still be that
# `cld serve <name>` process; submission@<i>.pid are further submission instances), then Kafka and PostgreSQL if
# up.sh started them. SIGTERM, then SIGKILL after a timeout.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
RUN=${CLD_LOCAL_RUN_DIR:-$REPO/.run/local}
STOP_TIMEOUT=${CLD_STOP_TIMEOUT:-30}
log() { printf 'down.sh: %s\n' "$*" >&2; }

is_service() { # $1 pid, $2 name (service, or service@instance)
  kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "serve ${2%%@*} "
}

[[ -d $RUN ]] || { log "nothing to stop"; exit 0; }
for pidf in "$RUN"/*.pid; do
  [[ -e $pidf ]] || continue
  name=$(basename "$pidf" .pid)
  pid=$(<"$pidf")
  if [[ $pid =~ ^[0-9]+$ ]] && is_service "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while is_service "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.2; done
    if is_service "$pid" "$name"; then
      log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f -- "$pidf" "$RUN/$name.port"
done

if [[ -f $RUN/kafka.started ]]; then
  # shellcheck disable=SC1091
  source "$RUN/kafka.started"
  KAFKA_PORT=$KAFKA_PORT bash "$REPO/deploy/kafka/kafka.sh" stop
  rm -f -- "$RUN/kafka.started"
fi
rm -f -- "$RUN/kafka.env"

if [[ -f $RUN/postgres.started ]]; then
  # shellcheck disable=SC1091
  source "$RUN/postgres.started"
  POSTGRES_PORT=$POSTGRES_PORT bash "$REPO/deploy/postgres/postgres.sh" stop
  rm -f -- "$RUN/postgres.started"
fi
rm -f -- "$RUN/postgres.env"
