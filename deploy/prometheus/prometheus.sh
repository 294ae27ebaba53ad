#!/usr/bin/env bash
# A real Prometheus server on 127.0.0.1 that scrapes the four CLD services, without Docker.
#
#   prometheus.sh install  make prometheus/promtool available (install.sh: Debian package, idempotent)
#   prometheus.sh render   write the config for the current env into the run dir, check it, print its path
#   prometheus.sh start    install if needed, render, start, wait (bounded) for /-/ready
#   prometheus.sh reload   re-render the config and SIGHUP the server (after editing alerts.yml)
#   prometheus.sh stop     SIGTERM the server from the pid file (SIGKILL after a timeout)
#   prometheus.sh status   exit 0 if running and ready, 1 if not
#   prometheus.sh clean    stop and delete the run dir (config, TSDB, log)
#
# On success `start` prints exactly one line on stdout,
#   PROMETHEUS_URL=http://127.0.0.1:<port>
# and everything else on stderr, so `export "$(bash deploy/prometheus/prometheus.sh start)"` works.
#
# Environment (defaults in brackets):
#   PROMETHEUS_PORT [9090]             listen port on 127.0.0.1
#   PROMETHEUS_RUN_DIR [<repo>/.run/prometheus-$PROMETHEUS_PORT]   prometheus.yml, data/, prometheus.log, prometheus.pid
#   PROMETHEUS_RETENTION [2d]          TSDB retention time
#   PROMETHEUS_START_TIMEOUT [60]      seconds to wait for /-/ready
#   PROMETHEUS_STOP_TIMEOUT [20]       seconds to wait after SIGTERM before SIGKILL
#   CLD_TARGET_HOST [127.0.0.1]        host the services listen on
#   CLD_INGEST_PORT CLD_VALIDATION_PORT CLD_PSEUDONYMISATION_PORT CLD_SUBMISSION_PORT
#                                      the services' own port settings (as for `make up` and `cld serve`)
#   INGEST_PORT VALIDATION_PORT PSEUDONYMISATION_PORT SUBMISSION_PORT
#                                      older names, still read; refused when they disagree with CLD_*_PORT
#   CLD_LOCAL_RUN_DIR [<repo>/.run/local]   where `make up` records each service's PID and port
#
# The scrape target of each service, first match wins: CLD_<SERVICE>_PORT (or <SERVICE>_PORT); else the port
# of the instance `make up` started, if its PID is still a running `cld serve <service>`; else the default
# (8001-8004), with a warning, since then whatever answers there is scraped. `render` logs each choice.
#
# The Debian package's own service (/etc/prometheus, /var/lib/prometheus, port 9090) plays no part:
# this script runs /usr/bin/prometheus itself with its own config, storage dir and port.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

SOURCE_CONFIG="$SCRIPT_DIR/prometheus.yml"
RULES="$SCRIPT_DIR/alerts.yml"
HOST="127.0.0.1"
DEFAULT_TARGET_HOST="127.0.0.1"

log() { printf 'prometheus.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_port_number() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }
is_seconds() { [[ $1 =~ ^[0-9]+$ ]]; }

PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
is_port_number "$PROMETHEUS_PORT" || die "PROMETHEUS_PORT must be a port number, got '$PROMETHEUS_PORT'"
RUN_DIR=$(realpath -m -- "${PROMETHEUS_RUN_DIR:-$REPO/.run/prometheus-$PROMETHEUS_PORT}")
RETENTION=${PROMETHEUS_RETENTION:-2d}
START_TIMEOUT=${PROMETHEUS_START_TIMEOUT:-60}
STOP_TIMEOUT=${PROMETHEUS_STOP_TIMEOUT:-20}
is_seconds "$START_TIMEOUT" || die "PROMETHEUS_START_TIMEOUT must be whole seconds"
is_seconds "$STOP_TIMEOUT" || die "PROMETHEUS_STOP_TIMEOUT must be whole seconds"
TARGET_HOST=${CLD_TARGET_HOST:-$DEFAULT_TARGET_HOST}
[[ $TARGET_HOST =~ ^[A-Za-z0-9.:_-]+$ ]] || die "CLD_TARGET_HOST must be a host name or address"

# job name, service, default port, env vars: the order of prometheus.yml.
JOBS=(cld-ingest cld-validation cld-pseudonymisation cld-submission)
SERVICE_NAMES=(ingest validation pseudonymisation submission)
DEFAULT_PORTS=(8001 8002 8003 8004)
CLD_PORT_VARS=(CLD_INGEST_PORT CLD_VALIDATION_PORT CLD_PSEUDONYMISATION_PORT CLD_SUBMISSION_PORT)
PORT_VARS=(INGEST_PORT VALIDATION_PORT PSEUDONYMISATION_PORT SUBMISSION_PORT)
LOCAL_RUN_DIR=${CLD_LOCAL_RUN_DIR:-$REPO/.run/local}

CONFIG="$RUN_DIR/prometheus.yml"
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/prometheus.pid"
LOG_FILE="$RUN_DIR/prometheus.log"
URL="http://$HOST:$PROMETHEUS_PORT"

# ---------------------------------------------------------------- render

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

# Port of the service instance `make up` started ($1: service), if its recorded PID is still that service.
local_instance_port() {
  local pidf="$LOCAL_RUN_DIR/$1.pid" portf="$LOCAL_RUN_DIR/$1.port" pid port
  [[ -f $pidf && -f $portf ]] || return 1
  pid=$(<"$pidf")
  port=$(<"$portf")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "serve $1" || return 1
  is_port_number "$port" || return 1
  printf '%s\n' "$port"
}

# Fills PORTS[i] with each service's scrape port (see the header for the order of precedence).
declare -a PORTS=()
resolve_ports() {
  local i cld_var legacy_var cld legacy port from
  for i in "${!JOBS[@]}"; do
    cld_var=${CLD_PORT_VARS[$i]}
    legacy_var=${PORT_VARS[$i]}
    cld=${!cld_var:-}
    legacy=${!legacy_var:-}
    if [[ -n $cld && -n $legacy && $cld != "$legacy" ]]; then
      die "$cld_var=$cld and $legacy_var=$legacy disagree: set only $cld_var"
    fi
    if [[ -n $cld ]]; then
      port=$cld from=$cld_var
    elif [[ -n $legacy ]]; then
      port=$legacy from=$legacy_var
    elif port=$(local_instance_port "${SERVICE_NAMES[$i]}"); then
      from="the ${SERVICE_NAMES[$i]} instance make up started ($LOCAL_RUN_DIR)"
    else
      port=${DEFAULT_PORTS[$i]}
      from="default: WARNING no $cld_var and no running make up instance, so whatever answers on $port is scraped"
    fi
    is_port_number "$port" || die "$from must be a port number, got '$port'"
    PORTS[i]=$port
    log "${JOBS[$i]} -> $TARGET_HOST:$port ($from)"
  done
}

cmd_render() {
  local -a sed_args=()
  local i port
  resolve_ports
  for i in "${!JOBS[@]}"; do
    grep -qF -- "'$DEFAULT_TARGET_HOST:${DEFAULT_PORTS[$i]}'" "$SOURCE_CONFIG" ||
      die "$SOURCE_CONFIG has no target '$DEFAULT_TARGET_HOST:${DEFAULT_PORTS[$i]}' for ${JOBS[$i]}"
    # Placeholders first, so that swapped ports (e.g. INGEST_PORT=8002, VALIDATION_PORT=8001) work.
    sed_args+=(-e "s|'$DEFAULT_TARGET_HOST:${DEFAULT_PORTS[$i]}'|'@TARGET_$i@'|")
  done
  for i in "${!JOBS[@]}"; do
    port=${PORTS[$i]}
    sed_args+=(-e "s|'@TARGET_$i@'|'$TARGET_HOST:$port'|")
  done
  grep -qE -- '^  - alerts\.yml$' "$SOURCE_CONFIG" || die "$SOURCE_CONFIG has no rule_files entry '  - alerts.yml'"
  sed_args+=(-e "s|^  - alerts\\.yml\$|  - $(sed_escape "$RULES")|")

  mkdir -p -- "$RUN_DIR"
  sed "${sed_args[@]}" -- "$SOURCE_CONFIG" >"$CONFIG.tmp"
  if grep -q '@TARGET_[0-9]@' -- "$CONFIG.tmp"; then
    die "unrendered token left in $CONFIG.tmp"
  fi
  if command -v promtool >/dev/null 2>&1; then
    local out
    if ! out=$(promtool check config "$CONFIG.tmp" 2>&1); then
      printf '%s\n' "$out" >&2
      die "the rendered config $CONFIG.tmp does not pass promtool check config"
    fi
  fi
  mv -f -- "$CONFIG.tmp" "$CONFIG"
  printf '%s\n' "$CONFIG"
}

# ---------------------------------------------------------------- processes

OWNER_PATTERN="--config.file=$CONFIG"
SERVER_LABEL="Prometheus"
# shellcheck source=../lib/process.sh
. "$SCRIPT_DIR/../lib/process.sh"

# HTTP status code of GET $1 on our server ("000" when there is no answer). Plain bash: no curl needed.
http_status() { # $1: path
  # shellcheck disable=SC2016 # $0/$1/$2 belong to the inner shell
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3
    IFS=" " read -r _ code _ <&3 && printf "%s\n" "$code"
  ' "$HOST" "$PROMETHEUS_PORT" "$1" 2>/dev/null || printf '000\n'
}

ready() { [[ $(http_status /-/ready) == 200 ]]; }

show_log_tail() {
  if [[ -f $LOG_FILE ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 30 -- "$LOG_FILE" >&2
  fi
}

# ---------------------------------------------------------------- commands

cmd_install() { bash "$SCRIPT_DIR/install.sh"; }

cmd_start() {
  local pid
  if pid=$(running_pid); then
    log "already running from $RUN_DIR (pid $pid)"
    printf 'PROMETHEUS_URL=%s\n' "$URL"
    return 0
  fi
  cmd_install
  if port_open "$PROMETHEUS_PORT"; then
    die "$HOST:$PROMETHEUS_PORT is already in use by something else; pick another PROMETHEUS_PORT"
  fi
  cmd_render >/dev/null
  mkdir -p -- "$DATA_DIR"
  rm -f -- "$PID_FILE"
  [[ ! -f $LOG_FILE ]] || mv -f -- "$LOG_FILE" "$LOG_FILE.1"

  local -a prom_cmd=(prometheus
    "--config.file=$CONFIG"
    "--storage.tsdb.path=$DATA_DIR"
    "--storage.tsdb.retention.time=$RETENTION"
    "--web.listen-address=$HOST:$PROMETHEUS_PORT"
    "--web.external-url=$URL/"
    --web.enable-lifecycle
    --log.level=info)
  local started=$SECONDS
  # The wrapper writes its own PID, then execs prometheus: the PID is the server's. setsid
  # puts it in its own session, so a Ctrl-C aimed at the caller does not reach it.
  # shellcheck disable=SC2016 # $0/$@ belong to the inner shell
  setsid bash -c 'printf "%s\n" "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${prom_cmd[@]}" </dev/null >"$LOG_FILE" 2>&1 &
  local i
  pid=""
  for ((i = 0; i < 100; i++)); do
    pid=$(read_pid) && break
    sleep 0.1
  done
  [[ -n $pid ]] || die "Prometheus did not start (no pid file); see $LOG_FILE"
  log "started pid $pid, waiting up to ${START_TIMEOUT} s for $URL/-/ready ..."

  local deadline=$((SECONDS + START_TIMEOUT))
  while ! ready; do
    if ! is_ours "$pid"; then
      show_log_tail
      rm -f -- "$PID_FILE"
      die "Prometheus exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail
      stop_pid "$pid"
      die "not ready after ${START_TIMEOUT} s"
    fi
    sleep 0.2
  done
  log "ready in $((SECONDS - started)) s (pid $pid, config $CONFIG, data $DATA_DIR, log $LOG_FILE)"
  printf 'PROMETHEUS_URL=%s\n' "$URL"
}

cmd_reload() {
  local pid
  pid=$(running_pid) || die "not running ($RUN_DIR)"
  cmd_render >/dev/null
  kill -HUP "$pid"
  log "config re-rendered and SIGHUP sent to pid $pid"
}

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
    if ready; then
      log "running and ready (pid $pid) at $URL"
      return 0
    fi
    log "running (pid $pid) but $URL/-/ready does not answer 200"
    return 1
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
usage: $(basename -- "$0") install|render|start|reload|stop|status|clean

  install  make prometheus and promtool available (Debian package; no-op when present)
  render   write $CONFIG for the current env and print its path
  start    start Prometheus on $URL, run dir $RUN_DIR
  reload   re-render the config and SIGHUP the running server
  stop     stop it (SIGTERM, SIGKILL after ${STOP_TIMEOUT} s)
  status   exit 0 if it runs and is ready, 1 if not
  clean    stop it and delete its run dir

env: PROMETHEUS_PORT PROMETHEUS_RUN_DIR PROMETHEUS_RETENTION PROMETHEUS_START_TIMEOUT
     PROMETHEUS_STOP_TIMEOUT CLD_TARGET_HOST CLD_INGEST_PORT CLD_VALIDATION_PORT
     CLD_PSEUDONYMISATION_PORT CLD_SUBMISSION_PORT (or INGEST_PORT ...) CLD_LOCAL_RUN_DIR
EOF
}

main() {
  case "${1:-}" in
    install) cmd_install ;;
    render) cmd_render ;;
    start) cmd_start ;;
    reload) cmd_reload ;;
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
