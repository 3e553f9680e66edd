#!/usr/bin/env bash
# Robustness checks beyond `cargo test`, bounded for CI. `cargo test` already runs the crash
# loop (20 rounds), the full-disk, wire-abuse, overload and shutdown tests, and the saved
# fuzz inputs. This script adds the crash loop's control run, which must find lost writes,
# and a short run of every fuzz target. docs/reliability.md describes each check and how
# to run it longer.
#
# Environment: CONTROL_ROUNDS (default 8), FUZZ_SECONDS per target (default 20). Everything
# talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

control_rounds="${CONTROL_ROUNDS:-8}"
fuzz_seconds="${FUZZ_SECONDS:-20}"

echo "== crash loop control run (no write-ahead log, must find lost writes): ${control_rounds} rounds"
cargo test --locked --test crash_loop -- --rounds "$control_rounds" --control

echo "== fuzzing: ${fuzz_seconds}s per target"
fuzz/run.sh "$fuzz_seconds"
