#!/usr/bin/env bash
# `make bench`: every benchmark, one after another, starting what each needs and stopping it after.
# Figures only; nothing here is asserted. Output is also appended to .run/bench/bench-<time>.log.
#   BENCH_ROWS (1000000): rows for `cld validate` and `cld preview`
#   BENCH_SUBMISSION_RECORDS (500000), BENCH_MESH_RECORDS (30000), BENCH_SCALE_RECORDS (30000),
#   BENCH_POSTGRES_PORT (55442: the PostgreSQL started here for the submission benches on PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=.venv/bin/python
mkdir -p .run/bench
LOG=.run/bench/bench-$(date -u +%Y%m%dT%H%M%S).log
exec > >(tee -a "$LOG") 2>&1
run() { echo; echo "== $*"; "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load $(cut -d' ' -f1-3 /proc/loadavg)"

run $PY bench/bench_validate.py --rows "${BENCH_ROWS:-1000000}"
run $PY bench/bench_preview.py --rows "${BENCH_ROWS:-1000000}"
run $PY bench/bench_columnar.py --big "$REPO/.cache/bench/columnar-big.csv"

# Submission: assemble + send 500,000 records, to the MESH sandbox (started here) and by file export.
MESH_PORT=${BENCH_MESH_PORT:-8790}
mesh_line=$(MESH_PORT=$MESH_PORT bash deploy/mesh/mesh-sandbox.sh start | tail -n 1)
trap 'MESH_PORT=$MESH_PORT bash deploy/mesh/mesh-sandbox.sh stop >/dev/null 2>&1 || true' EXIT
run $PY bench/bench_submission.py --records "${BENCH_SUBMISSION_RECORDS:-500000}" --mesh-url "${mesh_line#MESH_URL=}"
run $PY bench/bench_submission.py --records "${BENCH_SUBMISSION_RECORDS:-500000}"

# The same assembly (file export) with the state and submissions in PostgreSQL (issue 12), on a server started here.
PG_PORT=${BENCH_POSTGRES_PORT:-55442}
pg() { POSTGRES_PORT=$PG_PORT POSTGRES_RUN_DIR="$REPO/.run/bench/postgres-$PG_PORT" bash deploy/postgres/postgres.sh "$@"; }
pg_line=$(pg start | tail -n 1)
PG_URL=${pg_line#*=}
stop_all() {
  MESH_PORT=$MESH_PORT bash deploy/mesh/mesh-sandbox.sh stop >/dev/null 2>&1 || true
  pg clean >/dev/null 2>&1 || true
}
trap stop_all EXIT
run $PY bench/bench_submission.py --records "${BENCH_SUBMISSION_RECORDS:-500000}" --database-url "$PG_URL"

# The mesh: Kafka and the four services as processes (open tenancy: the bench publishes as made-up sources
# for twelve LAs so records spread over the partitions), then throughput and latency.
export CLD_TENANCY_MODE=open CLD_TOPIC_PREFIX="bench-$(date -u +%Y%m%dT%H%M%S)."
export CLD_SUBMISSION_STATE_DIR="$REPO/.run/bench/state-${CLD_TOPIC_PREFIX%.}"
trap 'bash deploy/local/down.sh || true; stop_all' EXIT
bash deploy/local/up.sh
set -a; . .run/local/kafka.env; set +a
run $PY bench/bench_mesh.py --records "${BENCH_MESH_RECORDS:-30000}"

# Submission scale-out (issue 12): records/s into the PostgreSQL state with 1 and with 2 instances, beside the
# kafka_hop_floor of the same messages, on the same broker.
run $PY bench/bench_submission_scale.py --records "${BENCH_SCALE_RECORDS:-30000}" --instances 1 2 --database-url "$PG_URL"
echo; echo "bench done; figures in $LOG"
