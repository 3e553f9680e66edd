#!/usr/bin/env bash
# Measures how connectord behaves as the data set grows: the latency of a page of 100 in a
# small app and in a large one, start-up time to a SERVING health check, resident memory
# and disk use.
#
# Data sets, each in its own fresh temporary data directory, written by
# `connectord-bench load` (offline, through the store, not over gRPC):
#   small:  SMALL connectors in one app;
#   large:  LARGE connectors in one app, plus LARGE connectors spread over APPS apps.
# For each, the script times start-up, then runs the list and get workloads with 1 and 64
# clients (server on CPU 0, client on CPU 1), then reads the server's RSS and the
# directory's size.
#
# Usage: bench/scale.sh [--small 10000] [--large 1000000] [--apps 1000] [--duration 10s]
#                       [--out DIR] [--no-build]
set -euo pipefail

SMALL=10000
LARGE=1000000
APPS=1000
DURATION=10s
OUT=""
BUILD=1
PORT=50161

while [[ $# -gt 0 ]]; do
  case "$1" in
    --small) SMALL="$2"; shift 2 ;;
    --large) LARGE="$2"; shift 2 ;;
    --apps) APPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
if [[ "$BUILD" == 1 ]]; then
  cargo build --release --locked --bin connectord --bin connectord-bench
fi
SERVER="$REPO/target/release/connectord"
BENCH="$REPO/target/release/connectord-bench"

WORK="$(mktemp -d -t connectord-scale.XXXXXX)"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID"
  fi
  if [[ "$OUT" != "$WORK" ]]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK/small" "$WORK/large" "$WORK"/*.ids
  fi
}
trap cleanup EXIT

log() { echo "scale.sh: $*" >&2; }

load() {
  local name="$1"; shift
  log "loading $name: $*"
  "$BENCH" load --data-dir "$WORK/$name" --ids-file "$WORK/$name.ids" "$@" | tee -a "$OUT/load.jsonl"
}

measure() {
  local name="$1" keys="$2"
  log "start-up of $name"
  "$BENCH" startup --endpoint "http://127.0.0.1:$PORT" -- \
    taskset -c 0 "$SERVER" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/$name" \
    | sed "s/^{/{\"data_set\": \"$name\", /" | tee -a "$OUT/startup.jsonl"

  taskset -c 0 "$SERVER" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/$name" > "$OUT/$name-server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  for workload in list get; do
    for clients in 1 64; do
      local connections=$(( clients < 4 ? clients : 4 ))
      taskset -c 1 "$BENCH" run --workload "$workload" --endpoint "http://127.0.0.1:$PORT" \
        --keys-file "$keys" --concurrency "$clients" --connections "$connections" \
        --warmup 2s --duration "$DURATION" --json \
        | sed "s/^{/{\"data_set\": \"$name\", \"keys\": \"$(basename "$keys")\", \"load_before\": $(cut -d' ' -f1 /proc/loadavg), /" \
        | tee -a "$OUT/runs.jsonl"
    done
  done
  echo "{\"data_set\": \"$name\", \"rss_kib\": $(ps -o rss= -p "$SERVER_PID"), \"disk_bytes\": $(du -sb "$WORK/$name" | cut -f1)}" \
    | tee -a "$OUT/resources.jsonl"
  kill -TERM "$SERVER_PID"
  for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  SERVER_PID=""
}

load small --connectors "$SMALL" --app-id small
measure small "$WORK/small.ids"

load large --connectors "$LARGE" --app-id one-app
# Keys of the one large app only, before the spread apps are appended.
cp "$WORK/large.ids" "$WORK/large-one-app.ids"
load large --connectors "$LARGE" --apps "$APPS" --app-id spread
grep '^spread-' "$WORK/large.ids" > "$WORK/large-spread.ids"
measure large "$WORK/large-one-app.ids"

# The spread apps: only the page and point-read workloads, on a running server again.
taskset -c 0 "$SERVER" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/large" > "$OUT/large-spread-server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for workload in list get; do
  taskset -c 1 "$BENCH" run --workload "$workload" --endpoint "http://127.0.0.1:$PORT" \
    --keys-file "$WORK/large-spread.ids" --concurrency 1 --connections 1 --warmup 2s --duration "$DURATION" --json \
    | sed "s/^{/{\"data_set\": \"large\", \"keys\": \"large-spread.ids\", \"load_before\": $(cut -d' ' -f1 /proc/loadavg), /" \
    | tee -a "$OUT/runs.jsonl"
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'data set':<8} {'keys':<20} {'workload':<8} {'clients':>7} {'req/s':>8} {'p50 µs':>7} {'p99 µs':>7} {'load':>5}")
for line in open(f"{out}/runs.jsonl"):
    run = json.loads(line)
    latency = run["latency_micros"]
    print(f"{run['data_set']:<8} {run['keys']:<20} {run['workload']:<8} {run['concurrency']:>7} "
          f"{run['throughput_per_second']:>8.0f} {latency['p50']:>7} {latency['p99']:>7} {run['load_before']:>5}")
for line in open(f"{out}/startup.jsonl"):
    print("start-up:", line.strip())
for line in open(f"{out}/resources.jsonl"):
    print("after the runs:", line.strip())
PY
