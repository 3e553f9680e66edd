"""Drive connectord's REST gateway with the unmodified conductorone-sdk client.

Each check calls one SDK operation against a running server and asserts the fields the
SDK parsed from the reply, so a JSON name or shape that the SDK does not read fails here.
Start the server first, or use run.sh, which builds and starts it:

    python connector_ops.py --base-url http://127.0.0.1:PORT

Checks run in order and share state through `Context`. To cover a new operation, write a
`check_*` function and add it to the matching list at the end of this file.
"""

import argparse
import dataclasses
import sys
import traceback
import uuid
from typing import Callable, List, Optional

from conductorone_sdk import SDK
from conductorone_sdk.models import errors, operations, shared

STRUCT_TYPE_URL = "type.googleapis.com/google.protobuf.Struct"
# Upper bound on the pages that the paging check reads, so a paging bug cannot loop forever.
MAX_PAGES = 20


@dataclasses.dataclass
class Context:
    sdk: SDK
    # A fresh app per run, so reruns against one data directory do not see old connectors.
    app_id: str
    configured_id: Optional[str] = None
    delegated_id: Optional[str] = None


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


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
# TODO: add get_credentials, rotate_credential and revoke_credential checks once the server
# implements those RPCs; they return UNIMPLEMENTED (HTTP 501) today.
CREDENTIAL_CHECKS: List[Check] = []
# TODO: add force_sync, pause_sync, resume_sync, update_connector_schedule, confirm_sync_valid
# and get_connector_sync_download_url checks once the server implements them.
SYNC_CHECKS: List[Check] = []


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

    # connectord does not authenticate yet, but the SDK requires credentials to build requests.
    security = shared.Security(bearer_auth="interop-test", oauth="interop-test")
    sdk = SDK(security=security, server_url=arguments.base_url, timeout_ms=10_000)
    context = Context(sdk=sdk, app_id=f"interop-{uuid.uuid4().hex[:12]}")

    checks = CONNECTOR_CHECKS + CREDENTIAL_CHECKS + SYNC_CHECKS
    failed = run_checks(context, checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
