# Functions that the interop scripts source: build connectord, prepare the Python virtual
# environment, and start and stop one server by its PID.
#
# Sourcing sets `here` (this directory), `repo`, `target_dir` and `venv`. start_server sets
# `work` (a temporary directory), `server_pid` and `address` (HOST:PORT). A caller runs
# `trap stop_server EXIT` before start_server, so the server is stopped and `work` removed
# however the script ends.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
venv="${INTEROP_VENV:-$target_dir/interop-venv}"
# Seconds to wait for the server to report its address.
start_timeout=30

# The clients talk only to the server on loopback, so keep any configured proxy out of it.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

work=""
server_pid=""
address=""

build_server() {
    cargo build --locked --manifest-path "$repo/Cargo.toml" --bin connectord
}

# Creates the virtual environment on first use and installs requirements.txt into it. A copy
# of the installed requirements.txt is kept in the environment, so pip runs again only when
# the file changes.
prepare_venv() {
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    if ! cmp -s "$here/requirements.txt" "$venv/interop-requirements.txt"; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
        cp "$here/requirements.txt" "$venv/interop-requirements.txt"
    fi
}

start_server() {
    work="$(mktemp -d)"
    # Port 0 lets the kernel pick a free port; the server logs the one it got.
    "$target_dir/debug/connectord" --listen 127.0.0.1:0 --data-dir "$work/data" --log-format json \
        2>"$work/server.log" &
    server_pid=$!

    for _ in $(seq 1 $((start_timeout * 10))); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "connectord exited during start-up; its log:" >&2
            cat "$work/server.log" >&2
            return 1
        fi
        address="$(grep '"listening"' "$work/server.log" | grep -o '127\.0\.0\.1:[0-9]\+' | head -n 1 || true)"
        [ -n "$address" ] && break
        sleep 0.1
    done
    if [ -z "$address" ]; then
        echo "connectord did not report its address within ${start_timeout}s; its log:" >&2
        cat "$work/server.log" >&2
        return 1
    fi
    echo "connectord (PID $server_pid) listens on $address"
}

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
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
}

print_server_log_tail() {
    echo "server log:" >&2
    tail -n 50 "$work/server.log" >&2
}
