#!/usr/bin/env bash
# A real PostgreSQL server on 127.0.0.1 for local runs and tests, without Docker (issue 12: the submission
# service's shared state when it scales out). Debian's `postgresql` package supplies the binaries; this script
# runs its own cluster with its own data directory, port and password, and never touches the package's cluster.
#
#   postgres.sh install  make initdb/postgres available (Debian package, only when missing; idempotent)
#   postgres.sh start    install if needed, initdb on first use, start, wait (bounded) until it accepts logins
#   postgres.sh stop     SIGINT (fast shutdown) the server from the pid file (SIGKILL after a timeout)
#   postgres.sh status   exit 0 if running and accepting connections, 1 if not
#   postgres.sh url      print the connection URL of the running server
#   postgres.sh clean    stop and delete the run dir (data, log, password)
#
# On success `start` prints exactly one line on stdout,
#   CLD_SUBMISSION_DATABASE_URL=postgresql://cld:<password>@127.0.0.1:<port>/cld
# and everything else on stderr, so `export "$(bash deploy/postgres/postgres.sh start)"` works.
#
# Environment (defaults in brackets):
#   POSTGRES_PORT [55432]              listen port on 127.0.0.1 (loopback only; no Unix socket outside the run dir)
#   POSTGRES_RUN_DIR [<repo>/.run/postgres-$POSTGRES_PORT]  data/, postgres.log, postgres.pid, password (0600)
#   POSTGRES_START_TIMEOUT [60]        seconds to wait for the server to accept a login
#   POSTGRES_STOP_TIMEOUT [30]         seconds to wait after SIGINT before SIGKILL
#
# The server runs as the `postgres` system user (PostgreSQL refuses to run as root) when started by root; the run
# dir is then owned by that user, mode 0700. Authentication is scram-sha-256 with a random password.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
HOST="127.0.0.1"
DB_NAME="cld"
DB_USER="cld"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_port_number() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }
is_seconds() { [[ $1 =~ ^[0-9]+$ ]]; }

POSTGRES_PORT=${POSTGRES_PORT:-55432}
is_port_number "$POSTGRES_PORT" || die "POSTGRES_PORT must be a port number, got '$POSTGRES_PORT'"
RUN_DIR=$(realpath -m -- "${POSTGRES_RUN_DIR:-$REPO/.run/postgres-$POSTGRES_PORT}")
START_TIMEOUT=${POSTGRES_START_TIMEOUT:-60}
STOP_TIMEOUT=${POSTGRES_STOP_TIMEOUT:-30}
is_seconds "$START_TIMEOUT" || die "POSTGRES_START_TIMEOUT must be whole seconds"
is_seconds "$STOP_TIMEOUT" || die "POSTGRES_STOP_TIMEOUT must be whole seconds"

DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/postgres.pid"
LOG_FILE="$RUN_DIR/postgres.log"
PASSWORD_FILE="$RUN_DIR/password"
OWNER_PATTERN="$DATA_DIR"
SERVER_LABEL="PostgreSQL"
# shellcheck source=../lib/process.sh
. "$SCRIPT_DIR/../lib/process.sh"

bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb && -x $d/postgres ]] && { printf '%s\n' "$d"; return 0; }
  done
  return 1
}

cmd_install() {
  if bin_dir >/dev/null; then
    return 0
  fi
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  log "installing Debian package 'postgresql' (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  # policy-rc.d is not ours to change: the package's own cluster may be created, but it is never started here.
  $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bin_dir >/dev/null || die "the postgresql package installed no initdb/postgres binaries"
  log "installed: $("$(bin_dir)/postgres" --version)"
}

# Run a command as the server's user: the postgres system user when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

exec_as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  fi
  exec "$@"
}

url() {
  printf 'postgresql://%s:%s@%s:%s/%s\n' "$DB_USER" "$(<"$PASSWORD_FILE")" "$HOST" "$POSTGRES_PORT" "$DB_NAME"
}

accepts_login() {
  PGPASSWORD=$(<"$PASSWORD_FILE") PGCONNECT_TIMEOUT=2 "$(bin_dir)/psql" -X -q -t -A \
    -h "$HOST" -p "$POSTGRES_PORT" -U "$DB_USER" -d "$DB_NAME" -c 'select 1' 2>/dev/null | grep -qx 1
}

# The server runs as the postgres user, so it must be able to pass through every folder above its run dir. A
# folder the project made private (0700, e.g. .run/ created under umask 077 by a test or `make up`) is opened for
# passing through only (o+x: no listing, no reading), and only inside the repository; above it, say what is wrong.
traversable() {
  local dir
  dir=$(dirname -- "$1")
  while [[ $dir != / ]]; do
    if ! as_owner test -x "$dir" 2>/dev/null; then
      case $dir in
        "$REPO" | "$REPO"/*) chmod o+x -- "$dir" ;;
        *) die "the postgres user cannot enter $dir (above the run dir): choose POSTGRES_RUN_DIR elsewhere" ;;
      esac
    fi
    dir=$(dirname -- "$dir")
  done
}

cmd_init() {
  [[ -f $DATA_DIR/PG_VERSION ]] && return 0
  local bin
  bin=$(bin_dir)
  mkdir -p -- "$RUN_DIR"
  chmod 0700 "$RUN_DIR"
  umask 077
  head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PASSWORD_FILE"
  [[ -s $PASSWORD_FILE ]] || die "could not make a password"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$RUN_DIR"
    traversable "$RUN_DIR"
  fi
  log "initdb $DATA_DIR ..."
  as_owner "$bin/initdb" -D "$DATA_DIR" -U "$DB_USER" --pwfile="$PASSWORD_FILE" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >>"$LOG_FILE" 2>&1 || die "initdb failed; see $LOG_FILE"
  # Loopback only, password only, and no Unix socket outside the run dir.
  cat >>"$DATA_DIR/postgresql.conf" <<EOF
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = '$RUN_DIR'
unix_socket_permissions = 0700
max_connections = 100
fsync = on
EOF
  cat >"$DATA_DIR/pg_hba.conf" <<EOF
local   all all                 scram-sha-256
host    all all 127.0.0.1/32    scram-sha-256
EOF
  [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$DATA_DIR/pg_hba.conf"
  # The database the services use.
  as_owner "$bin/postgres" --single -D "$DATA_DIR" postgres <<<"CREATE DATABASE $DB_NAME;" >>"$LOG_FILE" 2>&1 ||
    die "could not create database $DB_NAME; see $LOG_FILE"
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    printf 'CLD_SUBMISSION_DATABASE_URL=%s\n' "$(url)"
    return 0
  fi
  cmd_install
  if port_open "$POSTGRES_PORT"; then
    die "$HOST:$POSTGRES_PORT is already in use by something else; pick another POSTGRES_PORT"
  fi
  cmd_init
  local bin
  bin=$(bin_dir)
  log "starting on $HOST:$POSTGRES_PORT (data $DATA_DIR) ..."
  # exec in the background subshell, and setpriv execs too: $! is the postmaster's own PID.
  (exec_as_owner "$bin/postgres" -D "$DATA_DIR" >>"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until accepts_login; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f -- "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      die "the server exited during start; see $LOG_FILE"
    fi
    ((SECONDS < deadline)) || { stop_pid "$pid"; die "not accepting logins after ${START_TIMEOUT} s"; }
    sleep 0.2 # polling interval of a bounded wait
  done
  log "started pid $pid"
  printf 'CLD_SUBMISSION_DATABASE_URL=%s\n' "$(url)"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f -- "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping $SERVER_LABEL (pid $pid) with SIGINT (fast shutdown) ..."
  kill -INT "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "still running after ${STOP_TIMEOUT} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f -- "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid=$(running_pid) || { log "not running"; return 1; }
  accepts_login || { log "running (pid $pid) but not accepting logins"; return 1; }
  log "running (pid $pid) on $HOST:$POSTGRES_PORT"
}

cmd_url() {
  running_pid >/dev/null || die "not running"
  url
}

cmd_clean() {
  cmd_stop
  rm -rf -- "$RUN_DIR"
  log "removed $RUN_DIR"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) cmd_url ;;
clean) cmd_clean ;;
*)
  cat >&2 <<EOF
usage: $0 install|start|stop|status|url|clean
  start   start a PostgreSQL server on $HOST:$POSTGRES_PORT, run dir $RUN_DIR
env: POSTGRES_PORT POSTGRES_RUN_DIR POSTGRES_START_TIMEOUT POSTGRES_STOP_TIMEOUT
EOF
  exit 2
  ;;
esac
