# Shared by deploy/kafka/kafka.sh and deploy/prometheus/prometheus.sh (sourced, not run): a background
# server owned through a PID file, recognised by its command line, stopped by PID (never by name).
# The sourcing script sets: PID_FILE, OWNER_PATTERN (a string its server's command line contains), HOST,
# STOP_TIMEOUT, SERVER_LABEL (for messages), and defines log() and die().

read_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# True if $1 is alive and is the server of this run dir (guards against a reused PID; a zombie has an empty
# cmdline and so counts as gone).
is_ours() {
  local pid=$1 args
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  else
    args=$(ps -p "$pid" -o args= 2>/dev/null) || return 1
  fi
  [[ $args == *"$OWNER_PATTERN"* ]]
}

running_pid() {
  local pid
  pid=$(read_pid) || return 1
  is_ours "$pid" || return 1
  printf '%s\n' "$pid"
}

port_open() { # $1: port
  # shellcheck disable=SC2016 # $0/$1 belong to the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

wait_gone() { # $1: pid, $2: seconds; true once the process is gone
  local pid=$1 deadline=$((SECONDS + $2))
  while is_ours "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2 # polling interval of a bounded wait
  done
}

stop_pid() { # $1: pid
  local pid=$1
  log "stopping $SERVER_LABEL (pid $pid) with SIGTERM ..."
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "still running after ${STOP_TIMEOUT} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f -- "$PID_FILE"
  log "stopped"
}
