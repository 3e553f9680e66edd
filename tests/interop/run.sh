#!/usr/bin/env bash
# Builds connectord, starts it on 127.0.0.1 with a free port and a temporary data directory,
# runs connector_ops.py with conductorone-sdk against it, and stops the server by its PID.
#
# The virtual environment is kept in target/interop-venv (override with INTEROP_VENV), so
# later runs skip the install. Needs cargo, python3 with venv, and access to PyPI once.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_server
prepare_venv

trap stop_server EXIT
start_server

status=0
"$venv/bin/python" "$here/connector_ops.py" --base-url "http://$address" || status=$?
if [ "$status" -ne 0 ]; then
    print_server_log_tail
fi
exit "$status"
