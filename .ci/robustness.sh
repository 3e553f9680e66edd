#!/usr/bin/env bash
# Bounded robustness checks for CI: crash loop (and its control run), full disk, wire
# abuse, overload, shutdown under load, fuzz regressions, and a short run of every fuzz
# target. docs/reliability.md describes what each one proves and how to run it longer.
#
# Environment: CRASH_ROUNDS (default 20), CONTROL_ROUNDS (default 8), FUZZ_SECONDS per
# target (default 20). Everything talks to 127.0.0.1 only. The full-disk tests mount a
# tmpfs when run as root and skip with a message otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

crash_rounds="${CRASH_ROUNDS:-20}"
control_rounds="${CONTROL_ROUNDS:-8}"
fuzz_seconds="${FUZZ_SECONDS:-20}"

echo "== crash loop: ${crash_rounds} rounds"
cargo test --locked --test crash_loop -- --rounds "$crash_rounds"

echo "== crash loop control run (flush off, must find lost writes): ${control_rounds} rounds"
cargo test --locked --test crash_loop -- --rounds "$control_rounds" --control

echo "== full disk, wire abuse, overload, shutdown, fuzz regressions"
cargo test --locked --test full_disk --test wire_abuse --test overload --test shutdown --test fuzz_regressions

echo "== fuzzing: ${fuzz_seconds}s per target"
fuzz/run.sh "$fuzz_seconds"
