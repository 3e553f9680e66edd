//! Requests to connectord's ConnectorService.

use std::{sync::Arc, time::Instant};

use connectord::{
    api::page_token,
    pb::{self, connector_service_client::ConnectorServiceClient},
};
use tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{
    RunArgs,
    keys::{AppKeys, KeySet},
    runner::{self, Failure, Op, run_concurrently},
};

/// Connectors per list page, the API's maximum page size.
pub const PAGE_SIZE: usize = 100;

/// Catalog id of every connector the benchmark creates.
const CATALOG_ID: &str = "bench";

/// A connector client that sends the API token, if there is one.
type Client = ConnectorServiceClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every request when a token is set.
#[derive(Clone, Default)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl BearerToken {
    /// Reads the token from the first line of `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read --token-file {}: {error}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(format!("--token-file {} is empty: its first line must be the API token", path.display()));
        }
        // The parse error names no reason, so the message states it, without the token.
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| format!("--token-file {}: the token contains characters not allowed in a header", path.display()))?;
        Ok(Self(Some(value)))
    }
}

/// The open connections and the token that every client sends over them.
#[derive(Clone)]
struct Connections {
    channels: Vec<Channel>,
    token: BearerToken,
}

impl Connections {
    /// Returns a client on connection `index`, round-robin.
    fn client(&self, index: usize) -> Client {
        let channel = self.channels[index % self.channels.len()].clone();
        ConnectorServiceClient::with_interceptor(channel, self.token.clone())
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// One client: its own stream of unique create keys and its own share of keys to update.
pub struct ConnectordClient {
    client: Client,
    keys: Arc<KeySet>,
    /// App of new connectors.
    create_app_id: Arc<str>,
    description: Arc<str>,
    /// Prefix of request ids and display names, unique to this client in this run.
    client_tag: String,
    sequence: u64,
    /// Keys this client updates, with the etag it last saw.
    owned: Vec<OwnedKey>,
    next_owned: usize,
    rng: fastrand::Rng,
}

struct OwnedKey {
    app: usize,
    id: usize,
    etag: String,
}

/// Returns the config of every connector that connectord-bench creates: a small
/// `google.protobuf.Struct`, as Create requires a config.
pub fn bench_config() -> prost_types::Any {
    let domain = prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("bench.example.com".to_owned())) };
    let fields = std::collections::BTreeMap::from([("domain".to_owned(), domain)]);
    prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.Struct".to_owned(),
        value: prost::Message::encode_to_vec(&prost_types::Struct { fields }),
    }
}

/// Returns a description of exactly `size` bytes.
pub fn description_of(size: usize) -> String {
    "benchmark connector description ".chars().cycle().take(size).collect()
}

/// Preloads (or reads) the keys and returns one client per unit of concurrency, and the
/// number of keys they share.
pub async fn prepare(
    args: &RunArgs,
    channels: &[Channel],
    run_id: &str,
    preload: usize,
    hard_stop: Instant,
) -> Result<(Vec<ConnectordClient>, usize), String> {
    let app_id = args.app_id.clone().unwrap_or_else(|| format!("bench-{run_id}"));
    let description: Arc<str> = description_of(args.value_size).into();
    let token = match &args.token_file {
        Some(path) => BearerToken::read(path)?,
        None => BearerToken::default(),
    };
    let connections = Connections { channels: channels.to_vec(), token };

    let keys = match &args.keys_file {
        Some(path) => KeySet::read_file(path)?,
        None => {
            let preloaded =
                preload_connectors(connections.clone(), &app_id, &description, run_id, preload, args.concurrency, hard_stop).await?;
            let (ids, etags) = preloaded.into_iter().unzip();
            KeySet::new(vec![AppKeys { app_id: app_id.clone(), ids, etags }])
        }
    };
    let key_count = keys.total();
    if key_count == 0 && args.workload != crate::Workload::Create {
        return Err("no keys to read or update: set --preload or --keys-file".into());
    }
    let keys = Arc::new(keys);
    let create_app_id: Arc<str> = app_id.into();

    let clients = (0..args.concurrency)
        .map(|index| {
            let owned = keys
                .owned_by(index, args.concurrency)
                .into_iter()
                .map(|(app, id)| {
                    let etag = keys.apps[app].etags.get(id).cloned().unwrap_or_default();
                    OwnedKey { app, id, etag }
                })
                .collect();
            ConnectordClient {
                client: connections.client(index),
                keys: Arc::clone(&keys),
                create_app_id: Arc::clone(&create_app_id),
                description: Arc::clone(&description),
                client_tag: format!("{run_id}-{index}"),
                sequence: 0,
                owned,
                next_owned: 0,
                rng: fastrand::Rng::new(),
            }
        })
        .collect();
    Ok((clients, key_count))
}

/// Creates `count` connectors in `app_id` and returns their ids and etags.
async fn preload_connectors(
    connections: Connections,
    app_id: &str,
    description: &Arc<str>,
    run_id: &str,
    count: usize,
    concurrency: usize,
    hard_stop: Instant,
) -> Result<Vec<(String, String)>, String> {
    let app_id = app_id.to_owned();
    let run_id = run_id.to_owned();
    let description = Arc::clone(description);
    run_concurrently(count, concurrency, hard_stop, move |index| {
        let mut client = connections.client(index);
        let request = create_request(&app_id, &description, &format!("{run_id}-preload-{index}"));
        async move {
            let response = client.create(request).await.map_err(|status| {
                let hint = match status.code() {
                    tonic::Code::Unauthenticated => "; pass an API token with --token-file",
                    _ => "",
                };
                format!(
                    "preload Create failed: {:?}: {}{hint}",
                    status.code(),
                    runner::with_causes(status.message(), std::error::Error::source(&status))
                )
            })?;
            let connector =
                response.into_inner().connector_view.and_then(|view| view.connector).ok_or("preload Create returned no connector")?;
            Ok((connector.id, connector.etag))
        }
    })
    .await
}

fn create_request(app_id: &str, description: &str, tag: &str) -> pb::ConnectorServiceCreateRequest {
    pb::ConnectorServiceCreateRequest {
        app_id: app_id.to_owned(),
        catalog_id: CATALOG_ID.to_owned(),
        display_name: format!("bench {tag}"),
        description: description.to_owned(),
        request_id: tag.to_owned(),
        config: Some(bench_config()),
        ..Default::default()
    }
}

impl ConnectordClient {
    pub async fn call(&mut self, op: Op) -> Result<(), Failure> {
        match op {
            Op::Create => self.create().await,
            Op::Get => self.get().await,
            Op::List => self.list().await,
            Op::Update => self.update().await,
        }
    }

    async fn create(&mut self) -> Result<(), Failure> {
        self.sequence += 1;
        let tag = format!("{}-{}", self.client_tag, self.sequence);
        let request = create_request(&self.create_app_id, &self.description, &tag);
        let response = self.client.create(request).await.map_err(|status| Failure::status(&status))?;
        let created = response.into_inner().connector_view.and_then(|view| view.connector);
        match created {
            Some(connector) if !connector.id.is_empty() && connector.display_name == format!("bench {tag}") => Ok(()),
            _ => Err(Failure::check("Create returned no connector or another one")),
        }
    }

    async fn get(&mut self) -> Result<(), Failure> {
        let (app, index) = self.keys.random(&mut self.rng);
        let app = &self.keys.apps[app];
        let request = pb::ConnectorServiceGetRequest { app_id: app.app_id.clone(), id: app.ids[index].clone() };
        let response = self.client.get(request).await.map_err(|status| Failure::status(&status))?;
        let found = response.into_inner().connector_view.and_then(|view| view.connector);
        match found {
            Some(connector) if connector.id == app.ids[index] => Ok(()),
            _ => Err(Failure::check(format!("Get of {} returned no connector or another one", app.ids[index]))),
        }
    }

    async fn list(&mut self) -> Result<(), Failure> {
        let (app, start) = self.keys.random_page(&mut self.rng, PAGE_SIZE);
        let app = &self.keys.apps[app];
        let page_token = match start {
            0 => String::new(),
            _ => page_token::encode(&page_token::connector_scope(&app.app_id, false), &app.ids[start - 1]),
        };
        let request =
            pb::ConnectorServiceListRequest { app_id: app.app_id.clone(), page_size: PAGE_SIZE as i32, page_token, ..Default::default() };
        let response = self.client.list(request).await.map_err(|status| Failure::status(&status))?;
        let page = response.into_inner().list;
        let expected = PAGE_SIZE.min(app.ids.len() - start);
        let first_id = page.first().and_then(|view| view.connector.as_ref()).map(|connector| connector.id.as_str());
        if page.len() < expected || page.len() > PAGE_SIZE || first_id != Some(app.ids[start].as_str()) {
            return Err(Failure::check(format!(
                "List returned {} connectors starting at {first_id:?}; expected {expected} starting at {}",
                page.len(),
                app.ids[start]
            )));
        }
        Ok(())
    }

    async fn update(&mut self) -> Result<(), Failure> {
        if self.owned.is_empty() {
            return Err(Failure::check("this client owns no keys to update; preload at least --concurrency keys"));
        }
        let slot = self.next_owned % self.owned.len();
        self.next_owned += 1;
        self.sequence += 1;
        let owned = &self.owned[slot];
        let app = &self.keys.apps[owned.app];

        // A new value of the same size: the sequence number replaces the first characters.
        let stamp = format!("{}-{} ", self.client_tag, self.sequence);
        let mut description = self.description.to_string();
        if description.len() >= stamp.len() {
            description.replace_range(..stamp.len(), &stamp);
        }
        let request = pb::ConnectorServiceUpdateRequest {
            connector: Some(pb::Connector {
                app_id: app.app_id.clone(),
                id: app.ids[owned.id].clone(),
                etag: owned.etag.clone(),
                description,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["description".to_owned()] }),
            ..Default::default()
        };
        match self.client.update(request).await {
            Ok(response) => {
                let etag = response.into_inner().connector_view.and_then(|view| view.connector).map(|connector| connector.etag);
                match etag {
                    Some(etag) if !etag.is_empty() && etag != self.owned[slot].etag => {
                        self.owned[slot].etag = etag;
                        Ok(())
                    }
                    _ => Err(Failure::check("Update returned no connector or an unchanged etag")),
                }
            }
            Err(status) => {
                // Another writer changed the connector: read its etag so the next update of
                // this key can succeed.
                if status.code() == tonic::Code::Aborted || status.code() == tonic::Code::FailedPrecondition {
                    self.refresh_etag(slot).await;
                }
                Err(Failure::status(&status))
            }
        }
    }

    async fn refresh_etag(&mut self, slot: usize) {
        let owned = &self.owned[slot];
        let app = &self.keys.apps[owned.app];
        let request = pb::ConnectorServiceGetRequest { app_id: app.app_id.clone(), id: app.ids[owned.id].clone() };
        if let Ok(response) = self.client.get(request).await
            && let Some(connector) = response.into_inner().connector_view.and_then(|view| view.connector)
        {
            self.owned[slot].etag = connector.etag;
        }
    }
}
