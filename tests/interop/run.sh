#!/usr/bin/env bash
# Builds connectord, starts it on 127.0.0.1 with a free port and a temporary data directory,
# runs connector_ops.py with conductorone-sdk against it, and stops the server by its PID.
#
# The virtual environment is kept in target/interop-venv (override with INTEROP_VENV), so
# later runs skip the install. Needs cargo, python3 with venv, and access to PyPI once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
venv="${INTEROP_VENV:-$target_dir/interop-venv}"
# Seconds to wait for the server to report its address.
start_timeout=30

cargo build --manifest-path "$repo/Cargo.toml" --bin connectord

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        # The server drains for up to its 10 s shutdown grace; give it a little longer.
        for _ in $(seq 1 120); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "connectord (PID $server_pid) did not stop after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$server_pid"
        fi
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT

# Port 0 lets the kernel pick a free port; the server logs the one it got.
"$target_dir/debug/connectord" --listen 127.0.0.1:0 --data-dir "$work/data" --log-format json \
    2>"$work/server.log" &
server_pid=$!

address=""
for _ in $(seq 1 $((start_timeout * 10))); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "connectord exited during start-up; its log:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    address="$(grep '"listening"' "$work/server.log" | grep -o '127\.0\.0\.1:[0-9]\+' | head -n 1 || true)"
    [ -n "$address" ] && break
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "connectord did not report its address within ${start_timeout}s; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "connectord (PID $server_pid) listens on $address"

status=0
"$venv/bin/python" "$here/connector_ops.py" --base-url "http://$address" || status=$?
if [ "$status" -ne 0 ]; then
    echo "server log:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
