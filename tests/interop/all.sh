#!/usr/bin/env bash
# Runs every client interoperability check against a freshly started connectord: the
# conductorone-sdk checks of run.sh, then the grpcurl-lite walk-through. Both run even when
# the first fails, and the exit status is 1 if either failed.
#
# Builds connectord and creates the Python virtual environment in target/interop-venv once
# (override with INTEROP_VENV). Needs cargo, python3 with venv, access to PyPI on the first
# run, and grpcurl-lite at ../shared/tools/grpcurl-lite next to the repository.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_server
prepare_venv

failed=()
echo "== conductorone-sdk checks (run.sh)"
"$here/run.sh" || failed+=("run.sh")
echo "== grpcurl-lite walk-through (grpcurl_walkthrough.sh)"
"$here/grpcurl_walkthrough.sh" || failed+=("grpcurl_walkthrough.sh")

if [ "${#failed[@]}" -ne 0 ]; then
    echo "interop checks failed: ${failed[*]}" >&2
    exit 1
fi
echo "all interop checks passed"
