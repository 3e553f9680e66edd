#!/usr/bin/env bash
# Walks through connectord's gRPC API with grpcurl-lite, which learns every type from server
# reflection as grpcurl does. The steps list and describe the services, then create, read,
# list and update a connector and give it a credential. With that credential in HTTP Basic
# metadata they run a sync as the worker, then read the sync's download URL, set a schedule,
# pause and resume syncing, and delete the connector.
#
# Builds connectord, starts it on 127.0.0.1 with a free port and a temporary data directory,
# and stops it by its PID. Each step checks grpcurl-lite's exit status and a field of its
# output, and the first failed step ends the walk-through with exit status 1.
#
# grpcurl-lite is expected at ../shared/tools/grpcurl-lite next to the repository (set
# GRPCURL_LITE to use another path). It runs in the virtual environment of run.sh.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

grpcurl_lite="${GRPCURL_LITE:-$repo/../shared/tools/grpcurl-lite}"
if [ ! -f "$grpcurl_lite" ]; then
    echo "grpcurl-lite not found at $grpcurl_lite. Set GRPCURL_LITE to its path." >&2
    exit 1
fi

connector_service=connectord.v1.ConnectorService
sync_service=connectord.v1.ConnectorSyncService
app_id=walkthrough
artifact_url=https://files.example.com/walkthrough/sync.c1z
pause_reason="maintenance of the upstream directory"
steps_passed=0

fail() {
    echo "FAIL $1" >&2
    echo "grpcurl-lite output:" >&2
    cat "$work/output" >&2
    echo "grpcurl-lite errors:" >&2
    cat "$work/errors" >&2
    print_server_log_tail
    exit 1
}

# Runs grpcurl-lite with `-plaintext` and the remaining arguments, storing its standard output
# in $work/output and its standard error in $work/errors. Fails the step named by $1 unless the
# exit status is $2: 0 for success, 64 + the gRPC status code for a call that returns an error.
grpcurl_step() {
    local step="$1" expected_status="$2"
    shift 2
    local status=0
    "$venv/bin/python" "$grpcurl_lite" -plaintext "$@" >"$work/output" 2>"$work/errors" || status=$?
    if [ "$status" -ne "$expected_status" ]; then
        fail "$step: grpcurl-lite exited with status $status, expected $expected_status"
    fi
}

# Prints the value at a dotted path of the JSON output, such as `connectorView.connector.id`
# or `list.0.connector.id`. Strings are printed as they are and other values as JSON. An
# absent path prints nothing.
field() {
    "$venv/bin/python" - "$1" "$work/output" <<'PYTHON'
import json
import sys

path, output_file = sys.argv[1], sys.argv[2]
with open(output_file) as output:
    try:
        value = json.load(output)
    except json.JSONDecodeError as error:
        sys.exit(f"the grpcurl-lite output is not JSON: {error}")
for key in path.split("."):
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        value = value[int(key)]
    elif isinstance(value, dict) and key in value:
        value = value[key]
    else:
        sys.exit(0)
print(value if isinstance(value, str) else json.dumps(value))
PYTHON
}

expect_field() {
    local step="$1" path="$2" expected="$3"
    local actual
    actual="$(field "$path")"
    if [ "$actual" != "$expected" ]; then
        fail "$step: $path is '$actual', expected '$expected'"
    fi
}

expect_field_set() {
    local step="$1" path="$2"
    if [ -z "$(field "$path")" ]; then
        fail "$step: $path is missing"
    fi
}

expect_field_absent() {
    local step="$1" path="$2"
    local actual
    actual="$(field "$path")"
    if [ -n "$actual" ]; then
        fail "$step: $path is '$actual', expected it to be absent"
    fi
}

expect_line() {
    local step="$1" line="$2"
    if ! grep -qxF -- "$line" "$work/output"; then
        fail "$step: the output has no line '$line'"
    fi
}

passed() {
    echo "ok   $1"
    steps_passed=$((steps_passed + 1))
}

build_server
prepare_venv

trap stop_server EXIT
start_server

step="list services"
grpcurl_step "$step" 0 "$address" list
expect_line "$step" "$connector_service"
expect_line "$step" "$sync_service"
passed "$step"

step="list methods"
grpcurl_step "$step" 0 "$address" list "$connector_service"
expect_line "$step" "$connector_service.Create"
expect_line "$step" "$connector_service.GetConnectorSyncDownloadURL"
passed "$step"

step="describe service"
grpcurl_step "$step" 0 "$address" describe "$connector_service"
expect_line "$step" '  name: "UpdateConnectorSchedule"'
passed "$step"

# conductorone-sdk reads the connector's OAuth grant under this JSON name.
step="describe connector"
grpcurl_step "$step" 0 "$address" describe connectord.v1.Connector
expect_line "$step" '  json_name: "oauthAuthorizedAs"'
passed "$step"

step="create with Struct config"
grpcurl_step "$step" 0 -d '{
  "app_id": "'"$app_id"'",
  "catalog_id": "okta",
  "display_name": "Okta production",
  "description": "the production tenant",
  "config": {"@type": "type.googleapis.com/google.protobuf.Struct",
             "value": {"domain": "example.okta.com"}}
}' "$address" "$connector_service/Create"
connector_id="$(field connectorView.connector.id)"
[ -n "$connector_id" ] || fail "$step: connectorView.connector.id is missing"
expect_field "$step" connectorView.connector.config.@type type.googleapis.com/google.protobuf.Struct
expect_field "$step" connectorView.connector.config.value.domain example.okta.com
passed "$step"

step="get"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Get"
expect_field "$step" connectorView.connector.id "$connector_id"
expect_field "$step" connectorView.connector.catalogId okta
passed "$step"

step="list"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "page_size": 10}' "$address" "$connector_service/List"
expect_field "$step" list.0.connector.id "$connector_id"
expect_field_absent "$step" list.1
passed "$step"

step="update with mask"
grpcurl_step "$step" 0 -d '{
  "connector": {"app_id": "'"$app_id"'", "id": "'"$connector_id"'",
                "display_name": "Okta (prod)", "description": "not in the mask"},
  "update_mask": "displayName"
}' "$address" "$connector_service/Update"
expect_field "$step" connectorView.connector.displayName "Okta (prod)"
expect_field "$step" connectorView.connector.description "the production tenant"
passed "$step"

step="rotate credential"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'"}' \
    "$address" "$connector_service/RotateCredential"
expect_field "$step" credential.connectorId "$connector_id"
client_id="$(field credential.clientId)"
client_secret="$(field clientSecret)"
[ -n "$client_id" ] || fail "$step: credential.clientId is missing"
[ -n "$client_secret" ] || fail "$step: clientSecret is missing"
worker_auth="authorization: Basic $(printf '%s:%s' "$client_id" "$client_secret" | base64 | tr -d '\n')"
passed "$step"

step="force sync"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'"}' \
    "$address" "$connector_service/ForceSync"
expect_field "$step" sync.state STATE_PENDING
sync_id="$(field sync.id)"
[ -n "$sync_id" ] || fail "$step: sync.id is missing"
passed "$step"

# Exit status 80 is 64 + UNAUTHENTICATED (16).
step="claim without credential"
grpcurl_step "$step" 80 -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'"}' \
    "$address" "$sync_service/ClaimSync"
grep -q "UNAUTHENTICATED" "$work/errors" || fail "$step: the error is not UNAUTHENTICATED"
passed "$step"

step="claim as worker"
grpcurl_step "$step" 0 -H "$worker_auth" \
    -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'", "wait": "5s"}' \
    "$address" "$sync_service/ClaimSync"
expect_field "$step" sync.id "$sync_id"
expect_field "$step" sync.state STATE_RUNNING
passed "$step"

step="heartbeat"
grpcurl_step "$step" 0 -H "$worker_auth" \
    -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'", "sync_id": "'"$sync_id"'"}' \
    "$address" "$sync_service/Heartbeat"
expect_field_set "$step" leaseExpiresAt
passed "$step"

step="complete as worker"
grpcurl_step "$step" 0 -H "$worker_auth" -d '{
  "app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'", "sync_id": "'"$sync_id"'",
  "succeeded": {"artifact_url": "'"$artifact_url"'"}
}' "$address" "$sync_service/CompleteSync"
expect_field "$step" sync.state STATE_DONE
passed "$step"

step="status after sync"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Get"
expect_field "$step" connectorView.connector.status.status SYNC_STATUS_DONE
expect_field_set "$step" connectorView.connector.status.completedAt
passed "$step"

step="get download URL"
grpcurl_step "$step" 0 \
    -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'", "sync_id": "'"$sync_id"'"}' \
    "$address" "$connector_service/GetConnectorSyncDownloadURL"
expect_field "$step" downloadUrl "$artifact_url"
passed "$step"

# conductorone-sdk 0.17.2 has no operation for UpdateConnectorSchedule, so it is checked here.
step="update schedule"
grpcurl_step "$step" 0 -d '{
  "app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'",
  "cron": {"cron_spec": "0 3 * * *", "timezone": "Europe/Berlin"}
}' "$address" "$connector_service/UpdateConnectorSchedule"
expect_field_set "$step" nextRuns.4
expect_field_absent "$step" nextRuns.5
passed "$step"

step="pause sync"
grpcurl_step "$step" 0 \
    -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'", "reason": "'"$pause_reason"'"}' \
    "$address" "$connector_service/PauseSync"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Get"
expect_field "$step" connectorView.connector.status.status SYNC_STATUS_DISABLED
expect_field "$step" connectorView.connector.canResumeSync true
expect_field "$step" connectorView.connector.syncDisabledReason "$pause_reason"
passed "$step"

step="resume sync"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "connector_id": "'"$connector_id"'"}' \
    "$address" "$connector_service/ResumeSync"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Get"
expect_field_absent "$step" connectorView.connector.canResumeSync
expect_field_absent "$step" connectorView.connector.syncDisabledAt
passed "$step"

step="delete"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Delete"
grpcurl_step "$step" 0 -d '{"app_id": "'"$app_id"'", "id": "'"$connector_id"'"}' \
    "$address" "$connector_service/Get"
expect_field_set "$step" connectorView.connector.deletedAt
passed "$step"

echo "$steps_passed steps passed"
