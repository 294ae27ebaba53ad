#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on
# 127.0.0.1, without Docker: the jars come from Maven Central via pom.xml.
#
#   kafka.sh fetch    fill the jar cache (idempotent)
#   kafka.sh start    fetch if needed, format storage, start, wait until ready
#   kafka.sh stop     SIGTERM the broker from the pid file (SIGKILL after a timeout)
#   kafka.sh status   exit 0 if running, 1 if not
#   kafka.sh clean    stop and delete the run dir (config, data, log)
#
# On success `start` prints exactly one line on stdout,
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
# and everything else on stderr. See README.md beside this file for the env vars.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

POM="$SCRIPT_DIR/pom.xml"
TEMPLATE="$SCRIPT_DIR/server.properties.template"
LOG4J="$SCRIPT_DIR/log4j.properties"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
READY_LINE="Kafka Server started"
HOST="127.0.0.1"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_port_number() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }

KAFKA_PORT=${KAFKA_PORT:-9092}
is_port_number "$KAFKA_PORT" || die "KAFKA_PORT must be a port number, got '$KAFKA_PORT'"
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
is_port_number "$KAFKA_CONTROLLER_PORT" ||
  die "KAFKA_CONTROLLER_PORT must be a port number, got '$KAFKA_CONTROLLER_PORT'"
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"

LIBS_DIR=$(realpath -m -- "${KAFKA_LIBS_DIR:-$REPO/.cache/kafka/libs}")
RUN_DIR=$(realpath -m -- "${KAFKA_RUN_DIR:-$REPO/.run/kafka-$KAFKA_PORT}")
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
[[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "KAFKA_START_TIMEOUT must be whole seconds"
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "KAFKA_STOP_TIMEOUT must be whole seconds"
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
EXTRA_OPTS=${KAFKA_OPTS:-}
MVN=${MVN:-mvn}
if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
  JAVA_BIN="$JAVA_HOME/bin/java"
else
  JAVA_BIN=java
fi

MARKER="$LIBS_DIR/.complete"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/kafka.log"
CONFIG="$RUN_DIR/server.properties"
DATA_DIR="$RUN_DIR/data"
CLUSTER_ID_FILE="$RUN_DIR/cluster.id"

# ---------------------------------------------------------------- fetch

pom_digest() { sha256sum -- "$POM" | cut -d' ' -f1; }

libs_complete() {
  [[ -f $MARKER ]] && [[ $(<"$MARKER") == "$(pom_digest)" ]]
}

check_libs() { # $1: dir to check; says what is wrong and fails
  local dir=$1 pattern
  if compgen -G "$dir/logback-*.jar" >/dev/null; then
    log "error: a logback jar ended up in $dir; it would fight with the reload4j binding"
    return 1
  fi
  for pattern in 'kafka_2.13-*.jar' 'kafka-clients-*.jar' 'slf4j-reload4j-*.jar' 'reload4j-*.jar' 'scala-library-*.jar'; do
    if ! compgen -G "$dir/$pattern" >/dev/null; then
      log "error: $pattern missing from $dir"
      return 1
    fi
  done
}

cmd_fetch() {
  if libs_complete; then
    log "jars already in $LIBS_DIR"
    return 0
  fi
  command -v "$MVN" >/dev/null || die "'$MVN' not found: Maven is needed to fetch the Kafka jars"
  mkdir -p -- "$(dirname -- "$LIBS_DIR")"
  # Two starts at once (tests and a demo) must not fetch into the same dir together.
  local lock_fd
  exec {lock_fd}>"$LIBS_DIR.lock"
  flock "$lock_fd"
  if libs_complete; then
    exec {lock_fd}>&-
    log "jars already in $LIBS_DIR"
    return 0
  fi
  log "fetching the Kafka jars from Maven Central into $LIBS_DIR ..."
  local tmp started=$SECONDS
  tmp=$(mktemp -d -- "$LIBS_DIR.tmp.XXXXXX")
  if ! "$MVN" -B -q -Dstyle.color=never -f "$POM" "$DEP_PLUGIN:copy-dependencies" \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$LIBS_DIR.fetch.log" 2>&1; then
    cat -- "$LIBS_DIR.fetch.log" >&2
    rm -rf -- "$tmp"
    die "mvn copy-dependencies failed (is Maven Central reachable?)"
  fi
  if ! check_libs "$tmp"; then
    rm -rf -- "$tmp"
    die "the fetched jars are incomplete or wrong"
  fi
  rm -rf -- "$LIBS_DIR"
  mv -- "$tmp" "$LIBS_DIR"
  pom_digest >"$MARKER"
  exec {lock_fd}>&-
  local count
  count=$(find "$LIBS_DIR" -maxdepth 1 -name '*.jar' | wc -l)
  log "fetched $count jars ($(du -sh -- "$LIBS_DIR" | cut -f1)) in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------- processes

OWNER_PATTERN=$CONFIG
SERVER_LABEL="the broker"
# shellcheck source=../lib/process.sh
. "$SCRIPT_DIR/../lib/process.sh"

show_log_tail() {
  if [[ -f $LOG_FILE ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 -- "$LOG_FILE" >&2
  fi
}

# ---------------------------------------------------------------- start

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

render_config() {
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_DATA_DIR@|$(sed_escape "$DATA_DIR")|g" \
    -- "$TEMPLATE" >"$CONFIG.tmp"
  if grep -q '@[A-Z_]*@' -- "$CONFIG.tmp"; then
    die "unrendered token left in $CONFIG.tmp"
  fi
  mv -f -- "$CONFIG.tmp" "$CONFIG"
}

# A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id == -* ]] || break
  done
  printf '%s\n' "$id"
}

cluster_id() {
  local id=""
  if [[ -f $DATA_DIR/meta.properties ]]; then # already formatted: keep its id
    id=$(sed -n 's/^cluster\.id=//p' -- "$DATA_DIR/meta.properties")
  fi
  if [[ -z $id && -s $CLUSTER_ID_FILE ]]; then
    id=$(<"$CLUSTER_ID_FILE")
  fi
  [[ -n $id ]] || id=$(new_cluster_id)
  printf '%s\n' "$id" >"$CLUSTER_ID_FILE"
  printf '%s\n' "$id"
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    log "already running from $RUN_DIR (pid $pid)"
    printf 'KAFKA_BOOTSTRAP_SERVERS=%s:%s\n' "$HOST" "$KAFKA_PORT"
    return 0
  fi
  command -v "$JAVA_BIN" >/dev/null || die "'$JAVA_BIN' not found: Java 8-21 is needed"
  cmd_fetch

  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "$HOST:$port is already in use by something else; pick another KAFKA_PORT"
    fi
  done

  mkdir -p -- "$RUN_DIR" "$DATA_DIR"
  rm -f -- "$PID_FILE"
  render_config

  local -a heap extra java_cmd
  read -r -a heap <<<"$HEAP_OPTS"
  read -r -a extra <<<"$EXTRA_OPTS"
  java_cmd=("$JAVA_BIN" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true "-Dlog4j.configuration=file:$LOG4J"
    "${extra[@]}" -cp "$LIBS_DIR/*")

  local id
  id=$(cluster_id)
  if ! "${java_cmd[@]}" kafka.tools.StorageTool format -t "$id" -c "$CONFIG" \
    --ignore-formatted >"$RUN_DIR/format.log" 2>&1; then
    cat -- "$RUN_DIR/format.log" >&2
    die "formatting the storage in $DATA_DIR failed"
  fi

  [[ ! -f $LOG_FILE ]] || mv -f -- "$LOG_FILE" "$LOG_FILE.1"
  local started=$SECONDS
  # The wrapper writes its own PID, then execs java: the PID is the broker's. setsid
  # puts the broker in its own session, so a Ctrl-C or a process-group kill aimed at
  # the caller does not reach it; only `kafka.sh stop` (or its PID) does.
  # shellcheck disable=SC2016 # $0/$@ belong to the inner shell
  setsid bash -c 'printf "%s\n" "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${java_cmd[@]}" kafka.Kafka "$CONFIG" </dev/null >"$LOG_FILE" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    pid=$(read_pid) && break
    sleep 0.1
  done
  [[ -n ${pid:-} ]] || die "the broker did not start (no pid file); see $LOG_FILE"
  log "started pid $pid, waiting up to ${START_TIMEOUT} s for $HOST:$KAFKA_PORT ..."

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! is_ours "$pid"; then
      show_log_tail
      rm -f -- "$PID_FILE"
      die "the broker exited during startup"
    fi
    if grep -qF -- "$READY_LINE" "$LOG_FILE" && port_open "$KAFKA_PORT"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail
      stop_pid "$pid"
      die "not ready after ${START_TIMEOUT} s"
    fi
    sleep 0.25
  done
  log "ready in $((SECONDS - started)) s (pid $pid, data in $DATA_DIR, log in $LOG_FILE)"
  printf 'KAFKA_BOOTSTRAP_SERVERS=%s:%s\n' "$HOST" "$KAFKA_PORT"
}

# ---------------------------------------------------------------- stop, status, clean

cmd_stop() {
  local pid
  if ! pid=$(read_pid); then
    rm -f -- "$PID_FILE"
    log "not running (no pid file in $RUN_DIR)"
    return 0
  fi
  if ! is_ours "$pid"; then
    rm -f -- "$PID_FILE"
    log "not running (stale pid file removed)"
    return 0
  fi
  stop_pid "$pid"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    if port_open "$KAFKA_PORT"; then
      log "running (pid $pid) on $HOST:$KAFKA_PORT"
    else
      log "running (pid $pid), $HOST:$KAFKA_PORT not accepting connections yet"
    fi
    return 0
  fi
  log "not running ($RUN_DIR)"
  return 1
}

cmd_clean() {
  cmd_stop
  case "$RUN_DIR" in
    / | "$HOME" | "$REPO" | "$REPO/.run" | "$SCRIPT_DIR")
      die "refusing to delete $RUN_DIR"
      ;;
  esac
  if [[ -d $RUN_DIR ]]; then
    rm -rf -- "$RUN_DIR"
    log "deleted $RUN_DIR"
  fi
}

usage() {
  cat >&2 <<EOF
usage: $(basename -- "$0") fetch|start|stop|status|clean

  fetch   copy the Kafka jars from Maven Central into $LIBS_DIR
  start   start a broker on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), run dir $RUN_DIR
  stop    stop that broker (SIGTERM, SIGKILL after ${STOP_TIMEOUT} s)
  status  exit 0 if it runs, 1 if not
  clean   stop it and delete its run dir

env: KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_RUN_DIR KAFKA_LIBS_DIR KAFKA_START_TIMEOUT
     KAFKA_STOP_TIMEOUT KAFKA_HEAP_OPTS KAFKA_OPTS JAVA_HOME MVN
EOF
}

main() {
  case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
