//! Connector credentials: RotateCredential issues a secret once, older credentials keep
//! working for the grace window, RevokeCredential and deleting the connector end a
//! credential at once, and a worker may act only for its own connector.

mod common;

use std::time::Duration;

use common::{
    TestServer, create, delete_request, expect_code, expect_invalid, get_request,
    lifecycle::{
        IssuedCredential, Worker, basic_authorization, force_sync, get_credential, get_sync, poll_until, revoke_request, rotate,
        sleep_past, utc, worker_for,
    },
    list_request,
};
use connectord::pb;
use prost::Message;
use tonic::Code;

/// Maximum number of usable credentials per connector, as the server enforces it.
const MAX_USABLE_CREDENTIALS: usize = 10;

fn list_credentials_request(connector: &pb::Connector, page_size: i32, page_token: &str) -> pb::ConnectorServiceListCredentialsRequest {
    pb::ConnectorServiceListCredentialsRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        page_size,
        page_token: page_token.to_owned(),
    }
}

/// Returns true when the encoded message contains the secret anywhere.
fn encoding_contains(message: &impl Message, secret: &str) -> bool {
    let bytes = message.encode_to_vec();
    bytes.windows(secret.len()).any(|window| window == secret.as_bytes())
}

async fn rotate_returns_prefixed_secret() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    let response = client
        .rotate_credential(pb::ConnectorServiceRotateCredentialRequest { app_id: "app-1".to_owned(), connector_id: connector.id.clone() })
        .await
        .expect("rotate")
        .into_inner();
    let credential = response.credential.expect("response has a credential");

    assert!(response.client_secret.starts_with("cds_"), "secret {:?} lacks the cds_ prefix", response.client_secret);
    assert!(response.client_secret.len() > "cds_".len() + 32, "secret {:?} is too short", response.client_secret);
    assert_eq!(credential.client_secret, response.client_secret, "the two copies of the secret differ");
    assert!(credential.client_id.starts_with("cdc_"), "client id {:?} lacks the cdc_ prefix", credential.client_id);
    assert_eq!(credential.app_id, "app-1");
    assert_eq!(credential.connector_id, connector.id);
    assert!(!credential.id.is_empty(), "credential id is empty");
    assert!(credential.created_at.is_some(), "created_at is missing");
    assert_eq!(credential.expires_time, None, "a new credential has an expiry");
    assert_eq!(credential.deleted_at, None);
    assert_eq!(credential.last_used_at, None);
}

async fn rotated_secret_authenticates_claim() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;

    let idle = worker.claim().await.expect("claim with the new secret");
    assert_eq!(idle, None, "claimed a sync that was never queued");

    let queued = force_sync(&mut client, &connector).await;
    let claimed = worker.claim().await.expect("claim after ForceSync").expect("a sync is claimed");
    assert_eq!(claimed.id, queued.id);
}

async fn older_credential_works_until_grace_ends() {
    let grace = Duration::from_secs(2);
    let server = TestServer::start_with(|options| options.credential_rotation_grace = grace).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let older = rotate(&mut client, &connector).await;
    let mut older_worker = Worker::new(&server, &connector, older.authorization()).await;
    older_worker.claim().await.expect("the first credential works before any rotation");

    let newer = rotate(&mut client, &connector).await;
    let mut newer_worker = Worker::new(&server, &connector, newer.authorization()).await;

    older_worker.claim().await.expect("the older credential works inside the grace window");
    newer_worker.claim().await.expect("the newer credential works");

    let older_read = get_credential(&mut client, &older.credential).await;
    let expires = utc(&older_read.expires_time);
    let rotated_at = utc(&newer.credential.created_at);
    assert_eq!(expires, rotated_at + grace, "the older credential does not expire one grace window after the rotation");
    let newer_read = get_credential(&mut client, &newer.credential).await;
    assert_eq!(newer_read.expires_time, None, "the newest credential has an expiry");

    sleep_past(expires).await;
    expect_code(older_worker.claim().await, Code::Unauthenticated);
    newer_worker.claim().await.expect("the newer credential still works after the grace window");
}

async fn third_rotation_keeps_earlier_expiry() {
    let grace = Duration::from_secs(30);
    let server = TestServer::start_with(|options| options.credential_rotation_grace = grace).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let first = rotate(&mut client, &connector).await;
    rotate(&mut client, &connector).await;
    let first_expiry = get_credential(&mut client, &first.credential).await.expires_time;

    rotate(&mut client, &connector).await;

    let first_after = get_credential(&mut client, &first.credential).await;
    assert_eq!(first_after.expires_time, first_expiry, "a later rotation extended the grace window of an older credential");
}

async fn revoke_ends_credential_at_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = rotate(&mut client, &connector).await;
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    worker.claim().await.expect("claim before the revocation");

    client.revoke_credential(revoke_request(&issued.credential)).await.expect("revoke");

    expect_code(worker.claim().await, Code::Unauthenticated);
    let revoked = get_credential(&mut client, &issued.credential).await;
    assert!(revoked.deleted_at.is_some(), "deleted_at is not set after the revocation");
    assert!(utc(&revoked.deleted_at) >= utc(&revoked.created_at), "deleted_at is before created_at");
}

async fn second_revoke_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = rotate(&mut client, &connector).await;
    client.revoke_credential(revoke_request(&issued.credential)).await.expect("first revoke");
    let revoked = get_credential(&mut client, &issued.credential).await;

    let status = expect_code(client.revoke_credential(revoke_request(&issued.credential)).await, Code::NotFound);

    assert!(status.message().contains(&issued.credential.id), "message lacks the credential id: {}", status.message());
    assert_eq!(get_credential(&mut client, &issued.credential).await, revoked, "the second revoke changed the credential");
}

async fn revoke_of_unknown_credential_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let other = create(&mut client, "app-1", "other").await;
    let issued = rotate(&mut client, &connector).await;

    let mut unknown = revoke_request(&issued.credential);
    unknown.id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned();
    expect_code(client.revoke_credential(unknown).await, Code::NotFound);

    let mut wrong_connector = revoke_request(&issued.credential);
    wrong_connector.connector_id = other.id.clone();
    expect_code(client.revoke_credential(wrong_connector).await, Code::NotFound);

    let still_live = get_credential(&mut client, &issued.credential).await;
    assert_eq!(still_live.deleted_at, None, "a revoke addressed to another connector revoked the credential");
}

async fn credential_of_deleted_connector_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    worker.claim().await.expect("claim before the delete");

    let second = rotate(&mut client, &connector).await.credential;
    client.revoke_credential(revoke_request(&second)).await.expect("revoke");
    let revoked_at = get_credential(&mut client, &second).await.deleted_at;

    client.delete(delete_request("app-1", &connector.id)).await.expect("delete");

    expect_code(worker.claim().await, Code::Unauthenticated);
    let listed = client.list_credentials(list_credentials_request(&connector, 10, "")).await.expect("list credentials").into_inner().list;
    assert_eq!(listed.len(), 2);
    for credential in &listed {
        assert!(credential.deleted_at.is_some(), "credential {} of the deleted connector is not revoked", credential.id);
    }
    let earlier = listed.iter().find(|credential| credential.id == second.id).expect("the revoked credential is listed");
    assert_eq!(earlier.deleted_at, revoked_at, "the delete revoked an already revoked credential again");
    let rotate_after_delete = client
        .rotate_credential(pb::ConnectorServiceRotateCredentialRequest { app_id: "app-1".to_owned(), connector_id: connector.id.clone() })
        .await;
    expect_code(rotate_after_delete, Code::FailedPrecondition);
}

async fn credential_of_other_connector_is_denied() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let owner = create(&mut client, "app-1", "owner").await;
    let sibling = create(&mut client, "app-1", "sibling").await;
    let foreign = create(&mut client, "app-2", "foreign").await;
    let issued = rotate(&mut client, &owner).await;
    let sibling_sync = force_sync(&mut client, &sibling).await;

    let mut sibling_worker = Worker::new(&server, &sibling, issued.authorization()).await;
    let mut foreign_worker = Worker::new(&server, &foreign, issued.authorization()).await;

    expect_code(sibling_worker.claim().await, Code::PermissionDenied);
    expect_code(foreign_worker.claim().await, Code::PermissionDenied);
    expect_code(sibling_worker.heartbeat(&sibling_sync.id).await, Code::PermissionDenied);
    expect_code(sibling_worker.succeed(&sibling_sync.id, "").await, Code::PermissionDenied);

    let untouched = get_sync(&mut client, &sibling, &sibling_sync.id).await;
    assert_eq!(untouched.state(), pb::sync::State::Pending, "a denied worker moved the sibling's sync");
}

async fn missing_or_malformed_authorization_is_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = rotate(&mut client, &connector).await;
    let client_id = issued.credential.client_id.clone();
    let other = rotate(&mut client, &connector).await;

    let cases = [
        ("no authorization metadata", String::new()),
        ("bearer scheme", format!("Bearer {}", issued.secret)),
        ("Basic without a value", "Basic ".to_owned()),
        ("value that is not base64", "Basic !!not base64!!".to_owned()),
        ("decoded value without a colon", format!("Basic {}", base64_of(&client_id))),
        ("empty client id", basic_authorization("", &issued.secret)),
        ("empty secret", basic_authorization(&client_id, "")),
        ("unknown client id", basic_authorization("cdc_unknown", &issued.secret)),
        ("secret of another credential", basic_authorization(&client_id, &other.secret)),
        ("secret with a changed last character", basic_authorization(&client_id, &changed_last_char(&issued.secret))),
    ];
    for (case, authorization) in cases {
        let mut worker = Worker::new(&server, &connector, authorization).await;
        let result = worker.claim().await;
        let status = result.expect_err(&format!("{case}: expected UNAUTHENTICATED"));
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }

    let mut valid = Worker::new(&server, &connector, issued.authorization()).await;
    valid.claim().await.expect("the unchanged credential still works");
}

async fn basic_scheme_is_case_insensitive() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = rotate(&mut client, &connector).await;
    let encoded = base64_of(&format!("{}:{}", issued.credential.client_id, issued.secret));

    // Authentication scheme names are case-insensitive (RFC 9110, section 11.1).
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let mut worker = Worker::new(&server, &connector, format!("{scheme} {encoded}")).await;
        let result = worker.claim().await;
        assert!(result.is_ok(), "scheme {scheme:?} was rejected: {result:?}");
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn changed_last_char(secret: &str) -> String {
    let mut changed = secret.to_owned();
    let last = changed.pop().expect("secret is not empty");
    changed.push(if last == 'A' { 'B' } else { 'A' });
    changed
}

async fn last_used_at_is_set_after_use() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = rotate(&mut client, &connector).await;
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    let unused = get_credential(&mut client, &issued.credential).await;
    assert_eq!(unused.last_used_at, None, "last_used_at is set before any use");

    worker.claim().await.expect("claim");

    let used = poll_until("last_used_at is set", Duration::from_secs(3), || {
        let mut client = client.clone();
        let credential = issued.credential.clone();
        async move { Some(get_credential(&mut client, &credential).await).filter(|read| read.last_used_at.is_some()) }
    })
    .await;
    assert!(utc(&used.last_used_at) >= utc(&used.created_at), "last_used_at is before created_at");
    assert_eq!(used.client_secret, "", "GetCredentials returned the secret");
}

async fn reads_never_return_secrets() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued: Vec<IssuedCredential> = vec![rotate(&mut client, &connector).await, rotate(&mut client, &connector).await];

    let get_connector = client.get(get_request("app-1", &connector.id)).await.expect("get").into_inner();
    let list_connectors = client.list(list_request("app-1", 10, "")).await.expect("list").into_inner();
    let list_credentials =
        client.list_credentials(list_credentials_request(&connector, 10, "")).await.expect("list credentials").into_inner();
    assert_eq!(list_credentials.list.len(), issued.len());
    for credential in &list_credentials.list {
        assert_eq!(credential.client_secret, "", "ListCredentials returned the secret of {}", credential.id);
    }

    for IssuedCredential { credential, secret } in &issued {
        let read = client
            .get_credentials(pb::ConnectorServiceGetCredentialsRequest {
                app_id: "app-1".to_owned(),
                connector_id: connector.id.clone(),
                id: credential.id.clone(),
            })
            .await
            .expect("get credentials")
            .into_inner();
        assert_eq!(read.credential.as_ref().expect("credential").client_secret, "", "GetCredentials returned a secret");
        assert!(!encoding_contains(&read, secret), "GetCredentials response of {} contains its secret", credential.id);
        assert!(!encoding_contains(&list_credentials, secret), "ListCredentials response contains the secret of {}", credential.id);
        assert!(!encoding_contains(&get_connector, secret), "Get response contains the secret of {}", credential.id);
        assert!(!encoding_contains(&list_connectors, secret), "List response contains the secret of {}", credential.id);
    }
}

async fn list_credentials_pages_newest_first() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(rotate(&mut client, &connector).await.credential.id);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut listed = Vec::new();
    let mut page_sizes = Vec::new();
    let mut page_token = String::new();
    for _ in 0..10 {
        let page =
            client.list_credentials(list_credentials_request(&connector, 2, &page_token)).await.expect("list credentials").into_inner();
        page_sizes.push(page.list.len());
        listed.extend(page.list.into_iter().map(|credential| credential.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    assert_eq!(listed, newest_first, "credentials are not listed newest first, each once");
    assert_eq!(page_sizes, [2, 2, 1]);
}

async fn list_credentials_rejects_token_of_other_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = create(&mut client, "app-1", "first").await;
    let second = create(&mut client, "app-1", "second").await;
    for _ in 0..3 {
        rotate(&mut client, &first).await;
        rotate(&mut client, &second).await;
    }
    let page = client.list_credentials(list_credentials_request(&first, 1, "")).await.expect("first page").into_inner();
    assert!(!page.next_page_token.is_empty(), "a page of 1 out of 3 has no next page token");

    let result = client.list_credentials(list_credentials_request(&second, 1, &page.next_page_token)).await;

    expect_invalid(result, "page_token");
}

async fn rotation_stops_at_usable_credential_limit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut issued = Vec::new();
    for _ in 0..MAX_USABLE_CREDENTIALS {
        issued.push(rotate(&mut client, &connector).await);
    }
    let request = pb::ConnectorServiceRotateCredentialRequest { app_id: "app-1".to_owned(), connector_id: connector.id.clone() };

    expect_code(client.rotate_credential(request.clone()).await, Code::FailedPrecondition);

    client.revoke_credential(revoke_request(&issued[0].credential)).await.expect("revoke one");
    client.rotate_credential(request).await.expect("rotate after a revocation frees a slot");
}

async fn parallel_rotations_stop_at_usable_credential_limit() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Whether two rotations count the same credentials depends on timing, so several
    // connectors each get a burst of parallel rotations.
    for round in 0..8 {
        let connector = create(&mut client.clone(), "app-1", &format!("okta-{round}")).await;
        let request = pb::ConnectorServiceRotateCredentialRequest { app_id: "app-1".to_owned(), connector_id: connector.id.clone() };
        let calls: Vec<_> = (0..4 * MAX_USABLE_CREDENTIALS)
            .map(|_| {
                let mut client = client.clone();
                let request = request.clone();
                tokio::spawn(async move { client.rotate_credential(request).await })
            })
            .collect();
        let mut issued = 0;
        for call in calls {
            match call.await.expect("rotation task") {
                Ok(_) => issued += 1,
                Err(status) => {
                    assert!(matches!(status.code(), Code::FailedPrecondition | Code::Aborted), "unexpected status {status:?}");
                }
            }
        }

        let listed = client
            .clone()
            .list_credentials(list_credentials_request(&connector, 100, ""))
            .await
            .expect("list credentials")
            .into_inner()
            .list;
        assert!(issued <= MAX_USABLE_CREDENTIALS, "{issued} parallel rotations succeeded; the limit is {MAX_USABLE_CREDENTIALS}");
        assert_eq!(listed.len(), issued, "every issued credential is listed, and no other");
    }
}

crate::both_backends!(
    rotate_returns_prefixed_secret,
    rotated_secret_authenticates_claim,
    older_credential_works_until_grace_ends,
    third_rotation_keeps_earlier_expiry,
    revoke_ends_credential_at_once,
    second_revoke_is_not_found,
    revoke_of_unknown_credential_is_not_found,
    credential_of_deleted_connector_fails,
    credential_of_other_connector_is_denied,
    missing_or_malformed_authorization_is_unauthenticated,
    basic_scheme_is_case_insensitive,
    last_used_at_is_set_after_use,
    reads_never_return_secrets,
    list_credentials_pages_newest_first,
    list_credentials_rejects_token_of_other_connector,
    rotation_stops_at_usable_credential_limit,
    parallel_rotations_stop_at_usable_credential_limit,
);
