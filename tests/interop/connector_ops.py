"""Drive connectord's REST gateway with the unmodified conductorone-sdk client.

Each check calls one SDK operation against a running server and asserts the fields the
SDK parsed from the reply, so a JSON name or shape that the SDK does not read fails here.
Start the server first, or use run.sh, which builds and starts it:

    python connector_ops.py --base-url http://127.0.0.1:PORT

The sync checks also play the worker: they claim and complete syncs through the
ConnectorSyncService REST routes with plain HTTP and the HTTP Basic credential that
rotate_credential returned, because the SDK has no worker operations.

Checks run in order and share state through `Context`. To cover a new operation, write a
`check_*` function and add it to the matching list at the end of this file.
"""

import argparse
import base64
import dataclasses
import json
import sys
import traceback
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from conductorone_sdk import SDK
from conductorone_sdk.models import errors, operations, shared

STRUCT_TYPE_URL = "type.googleapis.com/google.protobuf.Struct"
# Upper bound on the pages that the paging check reads, so a paging bug cannot loop forever.
MAX_PAGES = 20
# Deadline of one worker request, in seconds. It must exceed CLAIM_WAIT.
WORKER_TIMEOUT_SECONDS = 10
# How long a worker claim waits for a pending sync, as a google.protobuf.Duration in JSON.
CLAIM_WAIT = "5s"
ARTIFACT_URL = "https://files.example.com/interop/sync.c1z"
DATA_DROP_ERROR = "the sync would remove 90% of the users"

# The worker requests go straight to the server on loopback, never through a proxy from the
# environment.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Context:
    sdk: SDK
    # connectord's address, for the worker requests that the SDK cannot make.
    base_url: str
    # A fresh app per run, so reruns against one data directory do not see old connectors.
    app_id: str
    configured_id: Optional[str] = None
    delegated_id: Optional[str] = None
    # The credential of the configured connector that the worker requests use.
    credential: Optional[shared.ConnectorCredential] = None
    # The sync that the sync checks drive through its states.
    sync_id: Optional[str] = None
    # A sync that ended with a data drop and so has no artifact URL.
    data_drop_sync_id: Optional[str] = None


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def basic_authorization(client_id: str, client_secret: str) -> str:
    """Build the `authorization` header value of a connector credential."""
    token = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    return f"Basic {token}"


def worker_authorization(context: Context) -> str:
    expect(context.credential is not None, "no credential: rotate_credential did not pass")
    return basic_authorization(context.credential.client_id, context.credential.client_secret)


def call_worker(context: Context, route: str, body: Dict[str, Any], authorization: str) -> Tuple[int, Dict[str, Any]]:
    """POST `body` to a ConnectorSyncService REST route of the configured connector.

    `route` is the part of the path after `.../connectors/{connector_id}/syncs/`, such as
    `claim` or `{sync_id}/complete`. Returns the HTTP status and the decoded JSON body, for
    errors too.
    """
    url = f"{context.base_url}/api/v1/apps/{context.app_id}/connectors/{context.configured_id}/syncs/{route}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": authorization},
    )
    try:
        with LOOPBACK_OPENER.open(request, timeout=WORKER_TIMEOUT_SECONDS) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def claim_sync(context: Context) -> Dict[str, Any]:
    """Claim the configured connector's pending sync as the worker and return it."""
    status, body = call_worker(context, "claim", {"wait": CLAIM_WAIT}, worker_authorization(context))
    expect(status == 200, f"claim returned HTTP {status}: {body}")
    sync = body.get("sync")
    expect(sync is not None, f"no sync was pending within {CLAIM_WAIT}: {body}")
    expect(sync.get("state") == "STATE_RUNNING", f"the claimed sync is in state {sync.get('state')!r}")
    return sync


def complete_sync(context: Context, sync_id: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """Report the end of a running sync as the worker and return the finished sync."""
    status, body = call_worker(context, f"{sync_id}/complete", result, worker_authorization(context))
    expect(status == 200, f"complete returned HTTP {status}: {body}")
    return body["sync"]


def get_connector(context: Context, connector_id: str) -> shared.Connector:
    response = context.sdk.connector.get(
        request=operations.C1APIAppV1ConnectorServiceGetRequest(app_id=context.app_id, id=connector_id)
    )
    return response.connector_service_get_response.connector_view.connector


def check_create(context: Context) -> None:
    config = shared.ConnectorServiceCreateRequestConfig.model_validate(
        {"@type": STRUCT_TYPE_URL, "value": {"domain": "acme.okta.com", "port": 443}}
    )
    response = context.sdk.connector.create(
        request=operations.C1APIAppV1ConnectorServiceCreateRequest(
            app_id=context.app_id,
            connector_service_create_request=shared.ConnectorServiceCreateRequest(
                catalog_id="okta",
                description="created by conductorone-sdk",
                user_ids=["owner-1"],
                config=config,
            ),
        )
    )

    expect(response.status_code == 200, f"status {response.status_code}")
    connector = response.connector_service_create_response.connector_view.connector
    expect(bool(connector.id), "the connector has no id")
    expect(connector.app_id == context.app_id, f"app_id is {connector.app_id!r}")
    expect(connector.catalog_id == "okta", f"catalog_id is {connector.catalog_id!r}")
    expect(connector.description == "created by conductorone-sdk", f"description is {connector.description!r}")
    expect(connector.user_ids == ["owner-1"], f"user_ids is {connector.user_ids!r}")
    expect(connector.config is not None and connector.config.at_type == STRUCT_TYPE_URL, f"config is {connector.config!r}")
    value = (connector.config.model_extra or {}).get("value")
    expect(value == {"domain": "acme.okta.com", "port": 443}, f"config value is {value!r}")
    expect(connector.created_at is not None and connector.created_at.tzinfo is not None, "created_at is missing")
    expect(connector.deleted_at is None, "a new connector is deleted")
    context.configured_id = connector.id


def check_create_delegated(context: Context) -> None:
    response = context.sdk.connector.create_delegated(
        request=operations.C1APIAppV1ConnectorServiceCreateDelegatedRequest(
            app_id=context.app_id,
            connector_service_create_delegated_request=shared.ConnectorServiceCreateDelegatedRequest(
                catalog_id="okta",
                display_name="Pending setup",
                user_ids=["owner-2"],
            ),
        )
    )

    expect(response.status_code == 200, f"status {response.status_code}")
    connector = response.connector_service_create_response.connector_view.connector
    expect(bool(connector.id), "the connector has no id")
    expect(connector.display_name == "Pending setup", f"display_name is {connector.display_name!r}")
    expect(connector.user_ids == ["owner-2"], f"user_ids is {connector.user_ids!r}")
    expect(connector.config is None, "a delegated connector has a config")
    context.delegated_id = connector.id


def check_get(context: Context) -> None:
    response = context.sdk.connector.get(
        request=operations.C1APIAppV1ConnectorServiceGetRequest(app_id=context.app_id, id=context.configured_id)
    )

    connector = response.connector_service_get_response.connector_view.connector
    expect(connector.id == context.configured_id, f"id is {connector.id!r}")
    expect(connector.catalog_id == "okta", f"catalog_id is {connector.catalog_id!r}")
    expect(connector.connector_status is not None, "status is missing")


def check_get_missing_is_404(context: Context) -> None:
    try:
        context.sdk.connector.get(
            request=operations.C1APIAppV1ConnectorServiceGetRequest(app_id=context.app_id, id="missing-connector")
        )
    except errors.SDKError as error:
        expect(error.status_code == 404, f"status {error.status_code}")
        expect('"code":5' in error.body.replace(" ", ""), f"body {error.body}")
        return
    raise AssertionError("Get of a missing connector succeeded")


def check_list_with_paging(context: Context) -> None:
    for index in range(3):
        context.sdk.connector.create_delegated(
            request=operations.C1APIAppV1ConnectorServiceCreateDelegatedRequest(
                app_id=context.app_id,
                connector_service_create_delegated_request=shared.ConnectorServiceCreateDelegatedRequest(
                    catalog_id="okta", display_name=f"Paged {index}"
                ),
            )
        )

    ids: List[str] = []
    token: Optional[str] = None
    for _ in range(MAX_PAGES):
        response = context.sdk.connector.list(
            request=operations.C1APIAppV1ConnectorServiceListRequest(app_id=context.app_id, page_size=2, page_token=token)
        )
        page = response.connector_service_list_response
        views = page.list or []
        expect(len(views) <= 2, f"a page of size 2 has {len(views)} items")
        ids.extend(view.connector.id for view in views)
        token = page.next_page_token
        if not token:
            break
    else:
        raise AssertionError(f"more than {MAX_PAGES} pages")

    expect(len(ids) == 5, f"listed {len(ids)} connectors, expected 5")
    expect(len(set(ids)) == len(ids), f"a connector was listed twice: {ids}")
    expect(ids[:2] == [context.configured_id, context.delegated_id], f"creation order is lost: {ids}")


def check_update(context: Context) -> None:
    response = context.sdk.connector.update(
        request=operations.C1APIAppV1ConnectorServiceUpdateRequest(
            app_id=context.app_id,
            id=context.configured_id,
            connector_service_update_request=shared.ConnectorServiceUpdateRequest(
                connector=shared.ConnectorInput(display_name="Renamed", description="updated", user_ids=["ignored"]),
                update_mask="displayName,description",
            ),
        )
    )

    connector = response.connector_service_update_response.connector_view.connector
    expect(connector.display_name == "Renamed", f"display_name is {connector.display_name!r}")
    expect(connector.description == "updated", f"description is {connector.description!r}")
    expect(connector.user_ids == ["owner-1"], f"the mask did not protect user_ids: {connector.user_ids!r}")
    expect(connector.updated_at > connector.created_at, "updated_at did not move")


def check_update_delegated(context: Context) -> None:
    response = context.sdk.connector.update_delegated(
        request=operations.C1APIAppV1ConnectorServiceUpdateDelegatedRequest(
            connector_app_id=context.app_id,
            connector_id=context.delegated_id,
            connector_service_update_delegated_request=shared.ConnectorServiceUpdateDelegatedRequest(
                connector=shared.ConnectorInput(display_name="Set up", user_ids=["owner-2", "owner-3"]),
                update_mask="display_name,user_ids",
            ),
        )
    )

    connector = response.connector_service_update_response.connector_view.connector
    expect(connector.id == context.delegated_id, f"id is {connector.id!r}")
    expect(connector.display_name == "Set up", f"display_name is {connector.display_name!r}")
    expect(connector.user_ids == ["owner-2", "owner-3"], f"user_ids is {connector.user_ids!r}")


def check_delete(context: Context) -> None:
    response = context.sdk.connector.delete(
        request=operations.C1APIAppV1ConnectorServiceDeleteRequest(
            app_id=context.app_id,
            id=context.delegated_id,
            connector_service_delete_request=shared.ConnectorServiceDeleteRequest(),
        )
    )
    expect(response.status_code == 200, f"status {response.status_code}")

    read = context.sdk.connector.get(
        request=operations.C1APIAppV1ConnectorServiceGetRequest(app_id=context.app_id, id=context.delegated_id)
    )
    connector = read.connector_service_get_response.connector_view.connector
    expect(connector.deleted_at is not None, "deleted_at is not set after Delete")


def check_rotate_credential(context: Context) -> None:
    response = context.sdk.connector.rotate_credential(
        request=shared.ConnectorServiceRotateCredentialRequest(app_id=context.app_id, connector_id=context.configured_id)
    )

    expect(response.status_code == 200, f"status {response.status_code}")
    credential = response.connector_service_rotate_credential_response.connector_credential
    expect(bool(credential.id), "the credential has no id")
    expect(credential.app_id == context.app_id, f"app_id is {credential.app_id!r}")
    expect(credential.connector_id == context.configured_id, f"connector_id is {credential.connector_id!r}")
    expect(bool(credential.client_id), "the credential has no client_id")
    expect(bool(credential.client_secret), "the new credential has no client_secret")
    expect(credential.created_at is not None and credential.created_at.tzinfo is not None, "created_at is missing")
    expect(credential.deleted_at is None, "a new credential is deleted")
    # connectord also returns the secret in a top-level clientSecret. The SDK's
    # ConnectorServiceRotateCredentialResponse has no field for it and drops it, so SDK users
    # read the secret from credential.clientSecret only.
    raw_secret = response.raw_response.json().get("clientSecret")
    expect(raw_secret == credential.client_secret, "the top-level clientSecret differs from the credential's")
    context.credential = credential


def check_get_credentials(context: Context) -> None:
    response = context.sdk.connector.get_credentials(
        request=operations.C1APIAppV1ConnectorServiceGetCredentialsRequest(
            app_id=context.app_id, connector_id=context.configured_id, id=context.credential.id
        )
    )

    credential = response.connector_service_get_credentials_response.connector_credential
    expect(credential.id == context.credential.id, f"id is {credential.id!r}")
    expect(credential.client_id == context.credential.client_id, f"client_id is {credential.client_id!r}")
    expect(credential.connector_id == context.configured_id, f"connector_id is {credential.connector_id!r}")
    expect(credential.client_secret is None, "GetCredentials returned the secret")
    expect(credential.deleted_at is None, "the credential is deleted")


def check_worker_rejects_wrong_secret(context: Context) -> None:
    authorization = basic_authorization(context.credential.client_id, "cds_not-the-secret")
    status, body = call_worker(context, "claim", {}, authorization)

    expect(status == 401, f"claim with a wrong secret returned HTTP {status}: {body}")
    expect(body.get("code") == 16, f"body {body}")


def check_revoke_credential(context: Context) -> None:
    # Revoke a second credential, so the one in `context` keeps working for the sync checks.
    rotated = context.sdk.connector.rotate_credential(
        request=shared.ConnectorServiceRotateCredentialRequest(app_id=context.app_id, connector_id=context.configured_id)
    )
    credential = rotated.connector_service_rotate_credential_response.connector_credential
    authorization = basic_authorization(credential.client_id, credential.client_secret)
    status, body = call_worker(context, "claim", {}, authorization)
    expect(status == 200, f"claim with the new credential returned HTTP {status}: {body}")
    expect("sync" not in body, f"a sync was claimed before any was queued: {body}")

    response = context.sdk.connector.revoke_credential(
        request=operations.C1APIAppV1ConnectorServiceRevokeCredentialRequest(
            app_id=context.app_id,
            connector_id=context.configured_id,
            id=credential.id,
            connector_service_revoke_credential_request=shared.ConnectorServiceRevokeCredentialRequest(),
        )
    )
    expect(response.status_code == 200, f"status {response.status_code}")

    read = context.sdk.connector.get_credentials(
        request=operations.C1APIAppV1ConnectorServiceGetCredentialsRequest(
            app_id=context.app_id, connector_id=context.configured_id, id=credential.id
        )
    )
    revoked = read.connector_service_get_credentials_response.connector_credential
    expect(revoked.deleted_at is not None, "deleted_at is not set after RevokeCredential")
    status, body = call_worker(context, "claim", {}, authorization)
    expect(status == 401, f"claim with a revoked credential returned HTTP {status}: {body}")


def check_force_sync(context: Context) -> None:
    response = context.sdk.connector.force_sync(
        request=operations.C1APIAppV1ConnectorServiceForceSyncRequest(
            app_id=context.app_id, connector_id=context.configured_id, force_sync_request=shared.ForceSyncRequest()
        )
    )

    expect(response.status_code == 200, f"status {response.status_code}")
    expect(response.force_sync_response is not None, "the SDK parsed no ForceSyncResponse")
    # connectord returns the queued sync, but the SDK's ForceSyncResponse has no fields and
    # drops it, so its id is read from the raw body.
    sync = response.raw_response.json().get("sync", {})
    expect(sync.get("state") == "STATE_PENDING", f"the forced sync is {sync}")
    expect(sync.get("trigger") == "TRIGGER_MANUAL", f"the forced sync is {sync}")
    context.sync_id = sync["id"]


def check_claim_sets_status_running(context: Context) -> None:
    sync = claim_sync(context)
    expect(sync["id"] == context.sync_id, f"claimed sync {sync['id']}, expected the forced {context.sync_id}")

    status = get_connector(context, context.configured_id).connector_status
    expect(status is not None, "status is missing")
    expect(status.status == shared.ConnectorStatusStatus.SYNC_STATUS_RUNNING, f"status is {status.status!r}")
    expect(status.started_at is not None, "started_at is missing")
    expect(status.completed_at is None, f"a running sync has completed_at {status.completed_at}")


def check_data_drop_sets_status_error(context: Context) -> None:
    sync = complete_sync(context, context.sync_id, {"failed": {"error": DATA_DROP_ERROR, "dataDrop": True}})
    expect(sync.get("state") == "STATE_ERROR", f"the failed sync is {sync}")
    expect(sync.get("dataDrop") is True, f"the failed sync is {sync}")

    status = get_connector(context, context.configured_id).connector_status
    expect(status.status == shared.ConnectorStatusStatus.SYNC_STATUS_ERROR, f"status is {status.status!r}")
    expect(status.last_error == DATA_DROP_ERROR, f"last_error is {status.last_error!r}")
    expect(status.completed_at is not None, "completed_at is missing")
    context.data_drop_sync_id = context.sync_id


def check_confirm_sync_valid(context: Context) -> None:
    response = context.sdk.connector.confirm_sync_valid(
        request=operations.C1APIAppV1ConnectorServiceConfirmSyncValidRequest(
            app_id=context.app_id,
            connector_id=context.configured_id,
            sync_lifecycle_id=context.data_drop_sync_id,
            confirm_sync_valid_request=shared.ConfirmSyncValidRequest(),
        )
    )
    expect(response.status_code == 200, f"status {response.status_code}")
    expect(response.confirm_sync_valid_response is not None, "the SDK parsed no ConfirmSyncValidResponse")

    # Accepting the data drop queues a new sync.
    sync = claim_sync(context)
    expect(sync["id"] != context.data_drop_sync_id, "the data-drop sync was handed out again")
    expect(sync.get("trigger") == "TRIGGER_CONFIRM", f"the sync queued by ConfirmSyncValid is {sync}")
    context.sync_id = sync["id"]


def check_get_connector_sync_download_url(context: Context) -> None:
    sync = complete_sync(context, context.sync_id, {"succeeded": {"artifactUrl": ARTIFACT_URL}})
    expect(sync.get("state") == "STATE_DONE", f"the finished sync is {sync}")

    response = context.sdk.connector.get_connector_sync_download_url(
        request=operations.C1APIAppV1ConnectorServiceGetConnectorSyncDownloadURLRequest(
            app_id=context.app_id, connector_id=context.configured_id, sync_id=context.sync_id
        )
    )
    download_url = response.get_connector_sync_download_url_response.download_url
    expect(download_url == ARTIFACT_URL, f"download_url is {download_url!r}")

    status = get_connector(context, context.configured_id).connector_status
    expect(status.status == shared.ConnectorStatusStatus.SYNC_STATUS_DONE, f"status is {status.status!r}")
    expect(not status.last_error, f"a successful sync left last_error {status.last_error!r}")


def check_download_url_missing_is_404(context: Context) -> None:
    try:
        context.sdk.connector.get_connector_sync_download_url(
            request=operations.C1APIAppV1ConnectorServiceGetConnectorSyncDownloadURLRequest(
                app_id=context.app_id, connector_id=context.configured_id, sync_id=context.data_drop_sync_id
            )
        )
    except errors.SDKError as error:
        expect(error.status_code == 404, f"status {error.status_code}")
        expect('"code":5' in error.body.replace(" ", ""), f"body {error.body}")
        return
    raise AssertionError("the download URL of a sync without an artifact was returned")


def check_pause_sync(context: Context) -> None:
    context.sdk.connector.force_sync(
        request=operations.C1APIAppV1ConnectorServiceForceSyncRequest(
            app_id=context.app_id, connector_id=context.configured_id, force_sync_request=shared.ForceSyncRequest()
        )
    )
    response = context.sdk.connector.pause_sync(
        request=operations.C1APIAppV1ConnectorServicePauseSyncRequest(
            app_id=context.app_id, connector_id=context.configured_id, pause_sync_request=shared.PauseSyncRequest()
        )
    )
    expect(response.status_code == 200, f"status {response.status_code}")

    connector = get_connector(context, context.configured_id)
    status = connector.connector_status.status
    expect(status == shared.ConnectorStatusStatus.SYNC_STATUS_DISABLED, f"status is {status!r}")
    expect(connector.can_resume_sync is True, f"can_resume_sync is {connector.can_resume_sync!r}")
    expect(connector.sync_disabled_at is not None, "sync_disabled_at is missing")
    expect(connector.sync_disabled_category == "paused", f"sync_disabled_category is {connector.sync_disabled_category!r}")
    # PauseSync takes an optional reason, but the SDK's PauseSyncRequest has no fields to carry one.
    expect(not connector.sync_disabled_reason, f"sync_disabled_reason is {connector.sync_disabled_reason!r}")

    # Pausing cancelled the pending sync and hands out no other.
    status_code, body = call_worker(context, "claim", {}, worker_authorization(context))
    expect(status_code == 200, f"claim returned HTTP {status_code}: {body}")
    expect("sync" not in body, f"a paused connector handed out a sync: {body}")


def check_resume_sync(context: Context) -> None:
    response = context.sdk.connector.resume_sync(
        request=operations.C1APIAppV1ConnectorServiceResumeSyncRequest(
            app_id=context.app_id, connector_id=context.configured_id, resume_sync_request=shared.ResumeSyncRequest()
        )
    )
    expect(response.status_code == 200, f"status {response.status_code}")

    connector = get_connector(context, context.configured_id)
    status = connector.connector_status.status
    expect(status != shared.ConnectorStatusStatus.SYNC_STATUS_DISABLED, "status is still SYNC_STATUS_DISABLED")
    expect(not connector.can_resume_sync, f"can_resume_sync is {connector.can_resume_sync!r}")
    expect(connector.sync_disabled_at is None, f"sync_disabled_at is {connector.sync_disabled_at}")

    # Resuming queues a sync.
    sync = claim_sync(context)
    expect(sync.get("trigger") == "TRIGGER_RESUME", f"the sync queued by ResumeSync is {sync}")
    complete_sync(context, sync["id"], {"succeeded": {}})
    status = get_connector(context, context.configured_id).connector_status.status
    expect(status == shared.ConnectorStatusStatus.SYNC_STATUS_DONE, f"status is {status!r}")


def check_oauth_authorized_as(context: Context) -> None:
    # connectord never sets oauthAuthorizedAs today, because no RPC records an OAuth grant.
    # So the server check covers only its absence. Parsing a body that carries the field shows
    # that the SDK model reads the proto3 JSON name that connectord would write.
    response = context.sdk.connector.get(
        request=operations.C1APIAppV1ConnectorServiceGetRequest(app_id=context.app_id, id=context.configured_id)
    )
    raw_connector = response.raw_response.json()["connectorView"]["connector"]
    expect("oauthAuthorizedAs" not in raw_connector, f"connectord set oauthAuthorizedAs: {raw_connector}")
    connector = response.connector_service_get_response.connector_view.connector
    expect(connector.o_auth2_authorized_as is None, f"o_auth2_authorized_as is {connector.o_auth2_authorized_as!r}")

    parsed = shared.Connector.model_validate(
        {**raw_connector, "oauthAuthorizedAs": {"authEmail": "admin@example.com", "authorizedAt": "2026-01-02T03:04:05Z"}}
    )
    authorized_as = parsed.o_auth2_authorized_as
    expect(authorized_as is not None, "the SDK dropped oauthAuthorizedAs")
    expect(authorized_as.auth_email == "admin@example.com", f"auth_email is {authorized_as.auth_email!r}")
    expect(authorized_as.authorized_at is not None, "authorized_at is missing")


def check_validate_http_connector_config_is_404(context: Context) -> None:
    # The SDK offers ValidateHTTPConnectorConfig (POST /api/v1/apps/connectors/validate_config/http),
    # which is not part of connectord's API.
    try:
        context.sdk.connector.validate_http_connector_config(request=shared.EditorValidateRequest(text="{}"))
    except errors.SDKError as error:
        expect(error.status_code == 404, f"status {error.status_code}")
        return
    raise AssertionError("validate_http_connector_config succeeded; add a real check for it")


def check_every_sdk_operation_is_covered(context: Context) -> None:
    connector_class = type(context.sdk.connector)
    offered = {
        name
        for name, member in vars(connector_class).items()
        if callable(member) and not name.startswith("_") and not name.endswith("_async")
    }
    expect(offered == COVERED_SDK_OPERATIONS, f"not covered: {sorted(offered - COVERED_SDK_OPERATIONS)}; "
           f"no longer offered: {sorted(COVERED_SDK_OPERATIONS - offered)}")


Check = Callable[[Context], None]

CONNECTOR_CHECKS: List[Check] = [
    check_create,
    check_create_delegated,
    check_get,
    check_get_missing_is_404,
    check_list_with_paging,
    check_update,
    check_update_delegated,
    check_delete,
]
CREDENTIAL_CHECKS: List[Check] = [
    check_rotate_credential,
    check_get_credentials,
    check_worker_rejects_wrong_secret,
    check_revoke_credential,
]
SYNC_CHECKS: List[Check] = [
    check_force_sync,
    check_claim_sets_status_running,
    check_data_drop_sets_status_error,
    check_confirm_sync_valid,
    check_get_connector_sync_download_url,
    check_download_url_missing_is_404,
    check_pause_sync,
    check_resume_sync,
    check_oauth_authorized_as,
]
SDK_CHECKS: List[Check] = [
    check_validate_http_connector_config_is_404,
    check_every_sdk_operation_is_covered,
]

# The operations of conductorone-sdk's `sdk.connector` that the checks above call. Version
# 0.17.2 has no update_connector_schedule, so UpdateConnectorSchedule is checked only by
# grpcurl_walkthrough.sh.
COVERED_SDK_OPERATIONS = {
    "confirm_sync_valid",
    "create",
    "create_delegated",
    "delete",
    "force_sync",
    "get",
    "get_connector_sync_download_url",
    "get_credentials",
    "list",
    "pause_sync",
    "resume_sync",
    "revoke_credential",
    "rotate_credential",
    "update",
    "update_delegated",
    "validate_http_connector_config",
}


def run_checks(context: Context, checks: List[Check]) -> int:
    """Run every check, print one line for each, and return the number that failed."""
    failed = 0
    for check in checks:
        name = check.__name__.removeprefix("check_")
        try:
            check(context)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            print(f"ok   {name}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="connectord's address, such as http://127.0.0.1:50051")
    arguments = parser.parse_args()

    # The server runs without --tokens-file and so accepts any bearer token, but the SDK
    # requires credentials to build requests.
    security = shared.Security(bearer_auth="interop-test", oauth="interop-test")
    sdk = SDK(security=security, server_url=arguments.base_url, timeout_ms=10_000)
    context = Context(sdk=sdk, base_url=arguments.base_url.rstrip("/"), app_id=f"interop-{uuid.uuid4().hex[:12]}")

    checks = CONNECTOR_CHECKS + CREDENTIAL_CHECKS + SYNC_CHECKS + SDK_CHECKS
    failed = run_checks(context, checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
