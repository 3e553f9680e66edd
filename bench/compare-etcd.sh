#!/usr/bin/env bash
# Runs connectord and etcd side by side on 127.0.0.1 and prints the median results of each
# scenario and the connectord/etcd ratios.
#
# Both servers start on fresh temporary data directories, pinned to CPU 0; the load
# generator (connectord-bench) runs pinned to CPU 1. Rounds alternate connectord, etcd,
# connectord, etcd, … for every scenario. Every etcd run compacts etcd's history after its
# preload, before it measures. Both servers are stopped by PID when the script exits.
#
# Usage: bench/compare-etcd.sh [--rounds N] [--duration 10s] [--warmup 2s] [--preload N]
#                              [--out DIR] [--no-build]
# Needs: a Debian system (etcd comes from the etcd-server package, installed if missing),
# taskset, python3 and cargo.
set -euo pipefail

ROUNDS=3
DURATION=10s
WARMUP=2s
PRELOAD=10000
OUT=""
BUILD=1
CONNECTORD_PORT=50151
ETCD_PORT=23791
ETCD_PEER_PORT=23801

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --preload) PRELOAD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare-etcd.sh: unknown option $1; see --help" >&2; exit 2 ;;
  esac
done
if [[ "$ROUNDS" -lt 3 ]]; then
  echo "compare-etcd.sh: --rounds must be at least 3 so that a median means something" >&2
  exit 2
fi
if [[ "$(nproc --all)" -lt 2 ]]; then
  echo "compare-etcd.sh: needs 2 CPUs, one for the servers and one for the client" >&2
  exit 2
fi

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

if ! command -v etcd >/dev/null; then
  echo "compare-etcd.sh: installing etcd-server" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
if [[ "$BUILD" == 1 ]]; then
  cargo build --release --locked --bin connectord --bin connectord-bench
fi
SERVER="$REPO/target/release/connectord"
BENCH="$REPO/target/release/connectord-bench"

WORK="$(mktemp -d -t compare-etcd.XXXXXX)"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

CONNECTORD_PID=""
ETCD_PID=""
stop_servers() {
  for pid in $CONNECTORD_PID $ETCD_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      # Bounded wait: 30 s, then SIGKILL.
      for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
  done
  CONNECTORD_PID=""
  ETCD_PID=""
}
cleanup() {
  stop_servers
  if [[ "$OUT" != "$WORK" ]]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK/connectord-data" "$WORK/etcd-data"
  fi
}
trap cleanup EXIT

wait_for_port() {
  local port="$1" name="$2"
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "compare-etcd.sh: $name did not listen on 127.0.0.1:$port within 30 s; see $OUT/$name.log" >&2
  exit 1
}

echo "compare-etcd.sh: results and server logs in $OUT" >&2
taskset -c 0 "$SERVER" serve --listen "127.0.0.1:$CONNECTORD_PORT" --data-dir "$WORK/connectord-data" \
  > "$OUT/connectord.log" 2>&1 &
CONNECTORD_PID=$!
taskset -c 0 etcd --name bench --data-dir "$WORK/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER_PORT" \
  --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) --log-level warn \
  > "$OUT/etcd.log" 2>&1 &
ETCD_PID=$!
wait_for_port "$CONNECTORD_PORT" connectord
wait_for_port "$ETCD_PORT" etcd

# name workload concurrency connections
SCENARIOS=(
  "write-1 create 1 1"
  "write-64 create 64 4"
  "get-64 get 64 4"
  "list-64 list 64 4"
  "update-64 update 64 4"
  "mixed-256 mixed 256 4"
)

run_one() {
  local round="$1" scenario="$2" target="$3" workload="$4" concurrency="$5" connections="$6"
  local endpoint="http://127.0.0.1:$CONNECTORD_PORT" extra=()
  if [[ "$target" == etcd ]]; then
    endpoint="http://127.0.0.1:$ETCD_PORT"
    extra=(--etcd-serializable)
  fi
  local preload="$PRELOAD"
  [[ "$workload" == create ]] && preload=0
  local load_before
  load_before="$(cut -d' ' -f1 /proc/loadavg)"
  local json
  json="$(taskset -c 1 "$BENCH" run --target "$target" --workload "$workload" --endpoint "$endpoint" \
    --concurrency "$concurrency" --connections "$connections" --preload "$preload" \
    --warmup "$WARMUP" --duration "$DURATION" --json "${extra[@]}")"
  echo "{\"round\": $round, \"scenario\": \"$scenario\", \"load_before\": $load_before, \"run\": $json}" >> "$RESULTS"
  python3 - "$json" "$round" "$scenario" <<'PY' >&2
import json, sys
run = json.loads(sys.argv[1])
latency = run["latency_micros"]
print(f"round {sys.argv[2]} {sys.argv[3]:<10} {run['target']:<10} {run['throughput_per_second']:>9.0f} req/s"
      f"  p50 {latency['p50']:>6} µs  p99 {latency['p99']:>6} µs  errors {run['errors']}")
PY
}

for round in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    read -r name workload concurrency connections <<< "$scenario"
    run_one "$round" "$name" connectord "$workload" "$concurrency" "$connections"
    run_one "$round" "$name" etcd "$workload" "$concurrency" "$connections"
  done
done

stop_servers
du -sh "$WORK/connectord-data" "$WORK/etcd-data" > "$OUT/disk-use.txt" 2>/dev/null || true

python3 - "$RESULTS" <<'PY'
import json, statistics, sys

runs = [json.loads(line) for line in open(sys.argv[1])]

def median(scenario, target, metric):
    values = []
    for entry in runs:
        run = entry["run"]
        if entry["scenario"] != scenario or run["target"] != target:
            continue
        values.append(run["throughput_per_second"] if metric == "req/s" else run["latency_micros"][metric])
    return statistics.median(values) if values else float("nan")

# scenario, metric, and the target for the ratio connectord/etcd
rows = [
    ("write-1", "req/s", ">= 2.0"),
    ("write-1", "p99", "<= 0.5"),
    ("write-64", "req/s", ">= 2.0"),
    ("write-64", "p99", "<= 0.5"),
    ("get-64", "req/s", ">= 2.5"),
    ("list-64", "req/s", ">= 2.0"),
    ("update-64", "req/s", "none"),
    ("update-64", "p99", "none"),
    ("mixed-256", "req/s", "none"),
    ("mixed-256", "p50", "none"),
    ("mixed-256", "p99", "none"),
]
print(f"{'scenario':<10} {'metric':<9} {'connectord':>11} {'etcd':>11} {'ratio':>7}  target")
for scenario, metric, target in rows:
    ours = median(scenario, "connectord", metric)
    theirs = median(scenario, "etcd", metric)
    unit = "req/s" if metric == "req/s" else f"{metric} µs"
    print(f"{scenario:<10} {unit:<9} {ours:>11.0f} {theirs:>11.0f} {ours / theirs:>7.2f}  {target}")

tails = {}
for target in ("connectord", "etcd"):
    tails[target] = median("mixed-256", target, "p99") / median("mixed-256", target, "p50")
print(f"{'mixed-256':<10} {'p99/p50':<9} {tails['connectord']:>11.2f} {tails['etcd']:>11.2f} "
      f"{tails['connectord'] / tails['etcd']:>7.2f}  <= 1.0")
PY
