#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: a new cluster in a temporary directory, listening
# on 127.0.0.1 only, on a free port, with trust authentication.
#
# Source it and call the functions:
#   source .ci/postgres.sh
#   postgres_start            # sets POSTGRES_TEST_URL, POSTGRES_TEST_PID, POSTGRES_TEST_DIR
#   ...
#   postgres_stop             # stops the server by its PID and removes the directory
# Or run it: `bash .ci/postgres.sh start` prints the URL, the PID and the directory, and
# `bash .ci/postgres.sh stop DIR` stops the server of that directory.
#
# As root it installs Debian's postgresql package when no server binaries are found, and
# runs the server as the `postgres` user (or `nobody`), because postgres refuses to run as
# root.

postgres_bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

postgres_install() {
    if postgres_bin_dir >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql and not root; install the postgresql package" >&2
        return 1
    fi
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    postgres_bin_dir >/dev/null
}

# Runs a command as the user that owns the cluster.
postgres_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$POSTGRES_TEST_OWNER" -- "$@"
    else
        "$@"
    fi
}

postgres_start() {
    postgres_install || return 1
    local bin
    bin=$(postgres_bin_dir) || return 1

    POSTGRES_TEST_OWNER=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then
            POSTGRES_TEST_OWNER=postgres
        else
            POSTGRES_TEST_OWNER=nobody
        fi
    fi

    POSTGRES_TEST_DIR=$(mktemp -d /tmp/connectord-postgres.XXXXXX) || return 1
    chmod 755 "$POSTGRES_TEST_DIR"
    mkdir "$POSTGRES_TEST_DIR/data" "$POSTGRES_TEST_DIR/socket"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$POSTGRES_TEST_OWNER" "$POSTGRES_TEST_DIR"
    fi
    chmod 700 "$POSTGRES_TEST_DIR/data"

    if ! postgres_as_owner "$bin/initdb" --pgdata="$POSTGRES_TEST_DIR/data" --username=connectord \
        --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$POSTGRES_TEST_DIR/initdb.log" 2>&1; then
        echo "postgres.sh: initdb failed:" >&2
        cat "$POSTGRES_TEST_DIR/initdb.log" >&2
        return 1
    fi

    # A random port may be taken; try up to 20 before giving up.
    local attempt port started=0
    for attempt in $(seq 1 20); do
        port=$((20000 + RANDOM % 40000))
        if postgres_as_owner "$bin/pg_ctl" start --wait --timeout=60 \
            --pgdata="$POSTGRES_TEST_DIR/data" --log="$POSTGRES_TEST_DIR/server.log" \
            --options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$POSTGRES_TEST_DIR/socket -c max_connections=300" \
            >/dev/null 2>&1; then
            started=1
            break
        fi
    done
    if [ "$started" -ne 1 ]; then
        echo "postgres.sh: the server did not start after $attempt attempts; its log:" >&2
        cat "$POSTGRES_TEST_DIR/server.log" >&2 || true
        return 1
    fi

    POSTGRES_TEST_PID=$(head -n 1 "$POSTGRES_TEST_DIR/data/postmaster.pid")
    POSTGRES_TEST_PORT=$port
    if ! "$bin/createdb" --host=127.0.0.1 --port="$port" --username=connectord connectord_test; then
        echo "postgres.sh: createdb failed" >&2
        postgres_stop
        return 1
    fi
    POSTGRES_TEST_URL="postgres://connectord@127.0.0.1:$port/connectord_test"
    export POSTGRES_TEST_URL POSTGRES_TEST_PID POSTGRES_TEST_DIR POSTGRES_TEST_PORT POSTGRES_TEST_OWNER
    echo "postgres.sh: server PID $POSTGRES_TEST_PID listening on 127.0.0.1:$port; data in $POSTGRES_TEST_DIR" >&2
}

# Stops the server started by postgres_start by its PID (fast shutdown, then immediate
# after 30 s), and removes its directory. `postgres_stop DIR` stops the server of DIR.
postgres_stop() {
    local dir=${1:-$POSTGRES_TEST_DIR}
    [ -n "$dir" ] || return 0
    local pid=""
    if [ -f "$dir/data/postmaster.pid" ]; then
        pid=$(head -n 1 "$dir/data/postmaster.pid")
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid"
        local waited
        for waited in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "postgres.sh: server $pid still running after 30 s; sending SIGQUIT" >&2
            kill -QUIT "$pid" 2>/dev/null
            sleep 1
        fi
    fi
    rm -rf "$dir"
    if [ "$dir" = "${POSTGRES_TEST_DIR:-}" ]; then
        unset POSTGRES_TEST_URL POSTGRES_TEST_PID POSTGRES_TEST_DIR POSTGRES_TEST_PORT
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        start)
            postgres_start
            echo "POSTGRES_TEST_URL=$POSTGRES_TEST_URL"
            echo "POSTGRES_TEST_PID=$POSTGRES_TEST_PID"
            echo "POSTGRES_TEST_DIR=$POSTGRES_TEST_DIR"
            ;;
        stop)
            postgres_stop "${2:?usage: postgres.sh stop DIR}"
            ;;
        *)
            echo "usage: postgres.sh start | stop DIR (or source it and call postgres_start / postgres_stop)" >&2
            exit 2
            ;;
    esac
fi
