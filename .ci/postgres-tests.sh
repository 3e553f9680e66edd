#!/usr/bin/env bash
# Runs the tests that need PostgreSQL against a throwaway server. The script installs
# PostgreSQL from Debian's packages when its server binaries are missing and starts a new
# cluster on 127.0.0.1 with a free port (see .ci/postgres.sh). It then exports
# CONNECTORD_TEST_POSTGRES_URL and runs the test binaries that have PostgreSQL variants.
# On exit, also after a failure or an interrupt, it stops the server by its PID.
#
# Environment: POSTGRES_TESTS_TIMEOUT bounds the cargo run, in seconds (default 2400).
# Arguments are passed to the test binaries, for example a name filter: `postgres::`.
set -euo pipefail
cd "$(dirname "$0")/.."

timeout_seconds="${POSTGRES_TESTS_TIMEOUT:-2400}"

# Test binaries whose tests run against PostgreSQL when the variable is set.
postgres_test_binaries=(
    store_contract
    connector_rpcs
    pagination
    credentials
    sync_runs
    sync_leases
    sync_pause
    sync_schedule
    etag_and_request_id
    soft_delete
    postgres_replicas
    postgres_outage
    postgres_processes
    postgres_migrate
)

# shellcheck source=.ci/postgres.sh
source .ci/postgres.sh

stop_server() {
    local status=$?
    if [ -n "${POSTGRES_TEST_DIR:-}" ]; then
        local bin
        if bin=$(postgres_bin_dir); then
            postgres_as_owner "$bin/pg_ctl" stop --pgdata="$POSTGRES_TEST_DIR/data" --mode=fast --timeout=30 \
                >/dev/null 2>&1 || true
        fi
        # Stops the server by its PID if pg_ctl could not, and removes the data directory.
        postgres_stop
    fi
    exit "$status"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

echo "== PostgreSQL server"
postgres_start
"$(postgres_bin_dir)/postgres" --version
export CONNECTORD_TEST_POSTGRES_URL="$POSTGRES_TEST_URL"

echo "== PostgreSQL tests"
test_args=()
for binary in "${postgres_test_binaries[@]}"; do
    test_args+=(--test "$binary")
done
timeout --kill-after=30 "$timeout_seconds" cargo test --locked "${test_args[@]}" -- "$@"
