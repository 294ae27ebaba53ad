#!/usr/bin/env bash
# Start Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set) and the four CLD services as separate background
# processes (`cld serve <name>`), wait until every /health answers 200 (bounded), and leave them running.
# PIDs and logs: .run/local/ (CLD_LOCAL_RUN_DIR). `down.sh` stops exactly what this started (by PID).
#
# Env: KAFKA_BOOTSTRAP_SERVERS, CLD_INGEST_PORT (8001), CLD_VALIDATION_PORT (8002),
#      CLD_PSEUDONYMISATION_PORT (8003), CLD_SUBMISSION_PORT (8004), CLD_UP_TIMEOUT (90 s),
#      CLD_PSEUDO_KEY_FILE / CLD_PSEUDO_KEY (else a local development key is generated under .run/local).
#      CLD_DEADLETTER_KEY_FILE / CLD_DEADLETTER_KEY (else a random key is generated: .run/local/deadletter.key, 0600).
#      CLD_SUBMISSION_INSTANCES (1): N submission instances in one consumer group, on ports CLD_SUBMISSION_PORT,
#      +10, +20, ... (8004, 8014, ...), sharing one PostgreSQL state (CLD_SUBMISSION_DATABASE_URL). When N > 1 and
#      no URL is set, or the URL names this machine's project PostgreSQL (127.0.0.1/localhost, a port whose run dir
#      is .run/postgres-<port> or that nothing listens on), deploy/postgres/postgres.sh starts it (POSTGRES_PORT,
#      default 55432) and down.sh stops it. An instance's PID and port: .run/local/submission.pid/.port for the
#      first, submission@<i>.pid/.port for instance i >= 2.
#      CLD_TENANTS_FILE (else the example registry is copied to .run/local/tenants.json with fresh source keys in
#      .run/local/source-keys.json, mode 0600: `cld tenants init`), CLD_TENANCY_MODE=open (no registry at all:
#      any caller for any LA; synthetic data only, e.g. for bench/bench_mesh.py, which publishes as made-up sources).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
RUN=${CLD_LOCAL_RUN_DIR:-$REPO/.run/local}
CLD="$REPO/.venv/bin/cld"
TIMEOUT=${CLD_UP_TIMEOUT:-90}
log() { printf 'up.sh: %s\n' "$*" >&2; }

mkdir -p "$RUN"
[[ -x $CLD ]] || { log "error: $CLD not found: run 'make install' first"; exit 1; }

# ---- Kafka
if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
  log "using the Kafka cluster at $KAFKA_BOOTSTRAP_SERVERS"
else
  line=$(bash "$REPO/deploy/kafka/kafka.sh" start)
  export "${line?}"
  # Remember that this script started it (down.sh stops only what up.sh started).
  printf 'KAFKA_PORT=%s\n' "${KAFKA_PORT:-9092}" >"$RUN/kafka.started"
  log "Kafka running at $KAFKA_BOOTSTRAP_SERVERS"
fi
printf 'KAFKA_BOOTSTRAP_SERVERS=%s\n' "$KAFKA_BOOTSTRAP_SERVERS" >"$RUN/kafka.env"

# ---- pseudonymisation key (a development key only when none is configured)
if [[ -z ${CLD_PSEUDO_KEY_FILE:-} && -z ${CLD_PSEUDO_KEY:-} ]]; then
  if [[ ! -s $RUN/pseudo.key ]]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/pseudo.key")
    log "generated a local development pseudonymisation key: $RUN/pseudo.key (never use it for real data)"
  fi
  export CLD_PSEUDO_KEY_FILE="$RUN/pseudo.key"
fi
# ---- dead-letter fingerprint key (payload_hmac of dead letters; a local key only when none is configured)
if [[ -z ${CLD_DEADLETTER_KEY_FILE:-} && -z ${CLD_DEADLETTER_KEY:-} ]]; then
  if [[ ! -s $RUN/deadletter.key ]]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/deadletter.key")
    log "generated a local dead-letter fingerprint key: $RUN/deadletter.key"
  fi
  chmod 0600 "$RUN/deadletter.key"
  export CLD_DEADLETTER_KEY_FILE="$RUN/deadletter.key"
fi
export CLD_SUBMISSION_STATE_DIR=${CLD_SUBMISSION_STATE_DIR:-$REPO/.run/submission}

# ---- submission instances and their shared PostgreSQL state
INSTANCES=${CLD_SUBMISSION_INSTANCES:-1}
[[ $INSTANCES =~ ^[1-9][0-9]*$ ]] || { log "error: CLD_SUBMISSION_INSTANCES must be a whole number >= 1, got '$INSTANCES'"; exit 1; }
# True (and POSTGRES_PORT set) when $1 is a URL of the project's own PostgreSQL on this machine that we may start.
own_postgres_url() {
  local rest hostport host port
  [[ $1 =~ ^postgres(ql)?:// ]] || return 1
  rest=${1#*://}
  rest=${rest#*@}
  hostport=${rest%%/*}
  host=${hostport%%:*}
  port=${hostport##*:}
  [[ $host == 127.0.0.1 || $host == localhost ]] || return 1
  [[ $port =~ ^[0-9]+$ && $port != "$hostport" ]] || port=5432
  if [[ -d $REPO/.run/postgres-$port ]] || ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    POSTGRES_PORT=$port
    return 0
  fi
  return 1
}
start_postgres() {
  local already=0 line
  POSTGRES_PORT=$POSTGRES_PORT bash "$REPO/deploy/postgres/postgres.sh" status 2>/dev/null && already=1
  line=$(POSTGRES_PORT=$POSTGRES_PORT bash "$REPO/deploy/postgres/postgres.sh" start)
  if ((!already)); then
    # Remember that this script started it (down.sh stops only what up.sh started).
    printf 'POSTGRES_PORT=%s\n' "$POSTGRES_PORT" >"$RUN/postgres.started"
  fi
  printf '%s\n' "${line#*=}"
}
if [[ -z ${CLD_SUBMISSION_DATABASE_URL:-} ]]; then
  if ((INSTANCES > 1)); then
    POSTGRES_PORT=${POSTGRES_PORT:-55432}
    CLD_SUBMISSION_DATABASE_URL=$(start_postgres)
    export CLD_SUBMISSION_DATABASE_URL
    log "PostgreSQL for the submission state at 127.0.0.1:$POSTGRES_PORT (URL in $RUN/postgres.env, 0600)"
  fi
elif own_postgres_url "$CLD_SUBMISSION_DATABASE_URL"; then
  url=$(start_postgres)
  [[ $url == "$CLD_SUBMISSION_DATABASE_URL" ]] ||
    log "WARNING: CLD_SUBMISSION_DATABASE_URL differs from the URL of the project PostgreSQL on port $POSTGRES_PORT"
  log "PostgreSQL for the submission state at 127.0.0.1:$POSTGRES_PORT"
else
  log "using the submission database at CLD_SUBMISSION_DATABASE_URL (not started here)"
fi
if [[ -n ${CLD_SUBMISSION_DATABASE_URL:-} ]]; then
  (umask 077 && printf 'CLD_SUBMISSION_DATABASE_URL=%s\n' "$CLD_SUBMISSION_DATABASE_URL" >"$RUN/postgres.env")
elif ((INSTANCES > 1)); then
  log "error: $INSTANCES submission instances need a shared CLD_SUBMISSION_DATABASE_URL"
  exit 1
fi

# ---- tenants registry: tenancy is enforced unless CLD_TENANCY_MODE=open is asked for explicitly
if [[ ${CLD_TENANCY_MODE:-required} == open ]]; then
  log "WARNING: CLD_TENANCY_MODE=open: no tenants registry; every caller may submit for every LA (synthetic data only)"
elif [[ -z ${CLD_TENANTS_FILE:-} ]]; then
  if [[ ! -s $RUN/tenants.json || ! -s $RUN/source-keys.json || ! -s $RUN/operator-keys.json ]]; then
    (umask 077 && "$CLD" tenants init --registry "$RUN/tenants.json" \
      --from "$REPO/deploy/config/tenants.example.json" --keys-out "$RUN/source-keys.json" \
      --operator-keys-out "$RUN/operator-keys.json" --force)
  fi
  export CLD_TENANTS_FILE="$RUN/tenants.json"
  log "tenancy enforced: registry $CLD_TENANTS_FILE, keys (0600) $RUN/source-keys.json, $RUN/operator-keys.json"
fi

declare -A PORTS=(
  [ingest]=${CLD_INGEST_PORT:-8001}
  [validation]=${CLD_VALIDATION_PORT:-8002}
  [pseudonymisation]=${CLD_PSEUDONYMISATION_PORT:-8003}
  [submission]=${CLD_SUBMISSION_PORT:-8004}
)
SERVICES=(ingest validation pseudonymisation submission)
# Instance i >= 2 of the submission service: name submission@<i>, port CLD_SUBMISSION_PORT + 10 * (i - 1).
for ((i = 2; i <= INSTANCES; i++)); do
  PORTS[submission@$i]=$((PORTS[submission] + 10 * (i - 1)))
  SERVICES+=("submission@$i")
done

alive() { # $1: service or instance -> true if its recorded PID is a running `cld serve <service>`
  local pidf="$RUN/$1.pid" pid
  [[ -f $pidf ]] || return 1
  pid=$(<"$pidf")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "serve ${1%%@*} "
}

for s in "${SERVICES[@]}"; do
  if alive "$s"; then
    log "$s already running (pid $(<"$RUN/$s.pid"))"
    continue
  fi
  port=${PORTS[$s]}
  service=${s%%@*}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "error: port $port for $s is already in use (set CLD_${service^^}_PORT)"
    exit 1
  fi
  # setsid: the service is not in this shell's process group, so Ctrl-C in the terminal reaches only up.sh.
  setsid "$CLD" serve "$service" --port "$port" >>"$RUN/$s.log" 2>&1 </dev/null &
  echo $! >"$RUN/$s.pid"
  echo "$port" >"$RUN/$s.port"
  log "started $s (pid $!, http://127.0.0.1:$port, log $RUN/$s.log)"
done

# ---- wait until healthy (bounded)
deadline=$((SECONDS + TIMEOUT))
declare -A OK=()
failed=()
while ((${#OK[@]} + ${#failed[@]} < ${#SERVICES[@]})); do
  for s in "${SERVICES[@]}"; do
    [[ -n ${OK[$s]:-} ]] && continue
    [[ " ${failed[*]} " == *" $s "* ]] && continue
    if ! alive "$s"; then
      failed+=("$s")
      continue
    fi
    if curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:${PORTS[$s]}/health" 2>/dev/null; then
      OK[$s]=1
      log "$s healthy"
    fi
  done
  if ((SECONDS >= deadline)); then
    for s in "${SERVICES[@]}"; do
      [[ -z ${OK[$s]:-} && " ${failed[*]} " != *" $s "* ]] && failed+=("$s")
    done
    break
  fi
  sleep 0.5 # polling interval of a bounded wait
done

if ((${#failed[@]})); then
  for s in "${failed[@]}"; do
    log "ERROR: the $s service did not become healthy within ${TIMEOUT}s. Last lines of $RUN/$s.log:"
    tail -n 15 "$RUN/$s.log" >&2 || true
  done
  only_submission=1
  for s in "${failed[@]}"; do [[ ${s%%@*} == submission ]] || only_submission=0; done
  if ((only_submission)); then
    log "WARNING: the SUBMISSION SERVICE COULD NOT START; ingest, validation and pseudonymisation are running."
    exit 3
  fi
  exit 1
fi
submission_ports=()
for s in "${SERVICES[@]}"; do [[ $s == submission* ]] && submission_ports+=(":${PORTS[$s]}"); done
log "all four services are healthy: ingest :${PORTS[ingest]}, validation :${PORTS[validation]}," \
  "pseudonymisation :${PORTS[pseudonymisation]}, submission ${submission_ports[*]}"
