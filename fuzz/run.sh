#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time. Inputs that make a target fail are
# copied to fuzz/regressions/<target>/, which tests/fuzz_regressions.rs replays as a
# normal test, and the script then exits non-zero.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 25 seconds, every target)
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags.
set -euo pipefail

seconds="${1:-25}"
shift || true
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it from crates.io"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

# Without sanitizers: the code under test is safe Rust, and debug assertions catch
# arithmetic overflow.
fuzz_flags=(--sanitizer none --debug-assertions)
export RUSTC_BOOTSTRAP=1
# cargo-fuzz has no --locked flag, so it would rewrite a stale lock file without a word.
# Resolving the fuzz workspace with --locked first turns that into an error.
(cd "$fuzz_dir" && cargo metadata --locked --format-version 1 > /dev/null)
cargo fuzz build "${fuzz_flags[@]}"

failed=()
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzzing $target for ${seconds}s"
    if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "$corpus" "$fuzz_dir/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$artifacts/log.txt"; then
        failed+=("$target")
        mkdir -p "$fuzz_dir/regressions/$target"
        for artifact in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
            [ -e "$artifact" ] && cp "$artifact" "$fuzz_dir/regressions/$target/"
        done
        tail -n 40 "$artifacts/log.txt"
    fi
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$artifacts/log.txt" | sed "s/^/  $target /" || true
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failing targets: ${failed[*]}; their inputs are in fuzz/regressions/"
    echo "fuzz: 0 passed, ${#failed[@]} failed"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without failures"
echo "fuzz: ${#targets[@]} passed, 0 failed"
