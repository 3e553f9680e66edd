//! Wiring: turns a store and options into tonic services, and runs them on a listener with
//! graceful shutdown.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::{server::NamedService, service::Routes};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};

use crate::{
    admission::{AdmissionLayer, AdmissionLimits},
    api::{ConnectorApi, ConnectorApiOptions, SyncWorkerApi},
    auth::{AuthLayer, AuthPolicy, TokenFile, Tokens},
    connection_limit::{ConnectionLimits, limited_incoming},
    domain::{ConfigTypeError, ConfigTypes, ConnectorRegistry, CredentialService, LifecycleOptions, SyncLifecycle, lifecycle::run_timers},
    pb::{self, connector_service_server::ConnectorServiceServer, connector_sync_service_server::ConnectorSyncServiceServer},
    store::{PostgresStoreOptions, SledStoreOptions, Store, StoreBackend, sled_store::OpenError},
    stream_shutdown::StreamShutdown,
};

/// Largest gRPC message accepted or sent, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most concurrent HTTP/2 streams per connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// How long older credentials keep working after a rotation, by default.
pub const DEFAULT_CREDENTIAL_ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a Create request id is remembered.
pub const REQUEST_ID_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
const REQUEST_ID_PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Time that the timers get at shutdown to finish their round.
const TIMERS_STOP_LIMIT: Duration = Duration::from_secs(5);
/// Default free-space reserve of the data directory's file system, in bytes.
// NOTE: an estimate that leaves sled room for its log segments and snapshots, not measured.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 64 * 1024 * 1024;
/// Default size of sled's page cache.
pub const DEFAULT_SLED_CACHE_BYTES: u64 = crate::store::sled_store::DEFAULT_CACHE_CAPACITY_BYTES;

/// Failure to build or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    OpenStore(#[from] crate::store::OpenStoreError),
    #[error(transparent)]
    ConfigTypes(#[from] ConfigTypeError),
    #[error("cannot read descriptor set {path}: {source}")]
    ReadDescriptorSet { path: PathBuf, source: std::io::Error },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot serve: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokenError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error(
        "refusing to serve without authentication on {0}, which is not a loopback address: \
         set --tokens-file (create tokens with `connectord token create`), or pass \
         --insecure-no-auth to accept the risk"
    )]
    Unprotected(std::net::SocketAddr),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("final flush at shutdown failed: {0}")]
    Close(#[from] crate::store::StoreError),
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    /// PostgreSQL database to use in place of the sled database in `data_dir`.
    pub postgres: Option<PostgresStoreOptions>,
    /// Encoded `FileDescriptorSet` files whose messages become valid config types.
    pub descriptor_sets: Vec<PathBuf>,
    pub max_config_bytes: usize,
    /// How long in-flight calls may run after shutdown starts.
    pub shutdown_grace: Duration,
    pub connection_limits: ConnectionLimits,
    pub admission: AdmissionLimits,
    /// Free bytes kept on the data directory's file system; writes fail below it.
    pub min_free_disk_bytes: u64,
    /// Size of sled's page cache in bytes.
    pub sled_cache_bytes: u64,
    /// UNSAFE, for tests only: see [`SledStoreOptions::unsafe_skip_flush_for_tests`].
    pub unsafe_skip_flush_for_tests: bool,
    /// How long older credentials keep working after a rotation.
    pub credential_rotation_grace: Duration,
    /// How long a claimed sync stays with its worker without a heartbeat.
    pub sync_lease: Duration,
    /// How long a replica keeps running lease expiry and the scheduler after its last
    /// renewal; see [`LifecycleOptions::timer_lease`].
    pub timer_lease: Duration,
    /// API tokens; `None` serves without authentication, which only a loopback listener
    /// or `insecure_no_auth` allows.
    pub tokens_file: Option<PathBuf>,
    pub insecure_no_auth: bool,
    pub reflection_requires_auth: bool,
    /// Keys of Struct configs whose values are never returned.
    pub secret_struct_keys: Vec<String>,
    /// Serve TLS (and mutual TLS when a client CA is set) instead of plain text.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Origins that browsers may call the REST and gRPC-Web API from; empty disables CORS.
    pub cors_allow_origins: Vec<String>,
}

impl ServeOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            postgres: None,
            descriptor_sets: Vec::new(),
            max_config_bytes: ConnectorApiOptions::default().max_config_bytes,
            shutdown_grace: Duration::from_secs(10),
            connection_limits: ConnectionLimits::default(),
            admission: AdmissionLimits::default(),
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            sled_cache_bytes: DEFAULT_SLED_CACHE_BYTES,
            unsafe_skip_flush_for_tests: false,
            credential_rotation_grace: DEFAULT_CREDENTIAL_ROTATION_GRACE,
            sync_lease: LifecycleOptions::default().sync_lease,
            timer_lease: LifecycleOptions::default().timer_lease,
            tokens_file: None,
            insecure_no_auth: false,
            reflection_requires_auth: false,
            secret_struct_keys: crate::domain::secrets::DEFAULT_SECRET_STRUCT_KEYS.iter().map(|key| (*key).to_owned()).collect(),
            tls: None,
            cors_allow_origins: Vec::new(),
        }
    }
}

/// The tonic services of connectord, ready to be added to a tonic server or a gateway.
pub struct Services {
    pub connector: ConnectorServiceServer<ConnectorApi>,
    pub sync_worker: ConnectorSyncServiceServer<SyncWorkerApi>,
    pub health: tonic_health::pb::health_server::HealthServer<HealthService>,
    pub health_reporter: HealthReporter,
    /// Reflection v1 and v1alpha, which have no nameable types.
    pub reflection: Routes,
    pub registry: Arc<ConnectorRegistry>,
    /// Runs lease expiry and scheduled syncs; spawn [`run_timers`] with it.
    pub lifecycle: Arc<SyncLifecycle>,
    /// The config type registry's pool, operator descriptor sets included; the REST gateway
    /// resolves `Any` values in it.
    pub descriptor_pool: prost_reflect::DescriptorPool,
}

impl Services {
    /// Combines every service into one set of routes for `Server::add_routes`.
    pub fn into_routes(self) -> Routes {
        let mut routes = self.reflection;
        routes = routes.add_service(self.connector).add_service(self.sync_worker).add_service(self.health);
        routes
    }
}

/// Builds [`Services`] from a store and options.
pub struct ServicesBuilder {
    store: Arc<dyn Store>,
    config_types: ConfigTypes,
    operator_sets: Vec<Vec<u8>>,
    api_options: ConnectorApiOptions,
    lifecycle_options: LifecycleOptions,
    credential_rotation_grace: Duration,
}

impl ServicesBuilder {
    pub fn new(store: Arc<dyn Store>) -> Result<Self, ServerError> {
        Ok(Self {
            store,
            config_types: ConfigTypes::new(pb::FILE_DESCRIPTOR_SET)?,
            operator_sets: Vec::new(),
            api_options: ConnectorApiOptions::default(),
            lifecycle_options: LifecycleOptions::default(),
            credential_rotation_grace: DEFAULT_CREDENTIAL_ROTATION_GRACE,
        })
    }

    /// Registers the messages of an encoded `FileDescriptorSet` as config types and serves
    /// its files through reflection. `source_name` names it in errors.
    pub fn descriptor_set(mut self, source_name: &str, encoded: Vec<u8>) -> Result<Self, ServerError> {
        let added = self.config_types.register_descriptor_set(source_name, &encoded)?;
        tracing::info!(source = source_name, types = %added.join(","), "config types registered");
        self.operator_sets.push(encoded);
        Ok(self)
    }

    /// Replaces the `google.protobuf.Struct` keys whose values are secrets.
    pub fn secret_struct_keys(mut self, keys: Vec<String>) -> Self {
        self.config_types.set_secret_struct_keys(keys);
        self
    }

    pub fn max_config_bytes(mut self, bytes: usize) -> Self {
        self.api_options.max_config_bytes = bytes;
        self
    }

    pub fn credential_rotation_grace(mut self, grace: Duration) -> Self {
        self.credential_rotation_grace = grace;
        self
    }

    pub fn sync_lease(mut self, lease: Duration) -> Self {
        self.lifecycle_options.sync_lease = lease;
        self
    }

    pub fn timer_lease(mut self, lease: Duration) -> Self {
        self.lifecycle_options.timer_lease = lease;
        self
    }

    pub fn build(self) -> Result<Services, ServerError> {
        let descriptor_pool = self.config_types.pool().clone();
        let config_types = Arc::new(self.config_types);
        let registry = Arc::new(ConnectorRegistry::new(Arc::clone(&self.store), Arc::clone(&config_types)));
        let lifecycle = Arc::new(SyncLifecycle::new(Arc::clone(&self.store), self.lifecycle_options));
        let credentials = CredentialService::new(Arc::clone(&self.store), self.credential_rotation_grace);
        let api =
            ConnectorApi::new(Arc::clone(&registry), Arc::clone(&lifecycle), Arc::clone(&credentials), config_types, self.api_options);
        let connector =
            ConnectorServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
        let sync_worker = ConnectorSyncServiceServer::new(SyncWorkerApi::new(Arc::clone(&lifecycle), credentials))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let health_reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(health_reporter.clone()));

        Ok(Services {
            connector,
            sync_worker,
            health,
            health_reporter,
            reflection: Routes::new(reflection_builder(&self.operator_sets).build_v1()?)
                .add_service(reflection_builder(&self.operator_sets).build_v1alpha()?),
            registry,
            lifecycle,
            descriptor_pool,
        })
    }
}

/// Reflection over our files, tonic-health's, and the operator's. Only mounted services are
/// advertised, even if an operator's files define others.
fn reflection_builder(operator_sets: &[Vec<u8>]) -> tonic_reflection::server::Builder<'_> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(pb::connector_service_server::SERVICE_NAME)
        .with_service_name(pb::connector_sync_service_server::SERVICE_NAME)
        .with_service_name(<tonic_health::pb::health_server::HealthServer<HealthService> as NamedService>::NAME)
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    for set in operator_sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    builder
}

/// Opens the store (PostgreSQL when `options.postgres` is set, else sled in
/// `options.data_dir`) and serves every service on `listener` until
/// `shutdown` completes. Then health turns NOT_SERVING, the listener closes, in-flight calls
/// get `options.shutdown_grace` to finish, and the store makes its last writes durable.
pub async fn run(
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let auth = auth_policy(&listener, &options)?;
    let tls = options.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let backend = match &options.postgres {
        Some(postgres) => StoreBackend::Postgres(postgres.clone()),
        None => StoreBackend::Sled(SledStoreOptions {
            min_free_disk_bytes: options.min_free_disk_bytes,
            cache_capacity_bytes: options.sled_cache_bytes,
            unsafe_skip_flush_for_tests: options.unsafe_skip_flush_for_tests,
            ..SledStoreOptions::new(&options.data_dir)
        }),
    };
    let store = crate::store::open_store(&backend).await?;
    tracing::info!(store = %backend.describe(), "store opened");
    // Logged once the store is open, so that a server that cannot start ends with its
    // actual error rather than this warning.
    if options.tokens_file.is_none() {
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        tracing::warn!(%local_addr, "serving WITHOUT authentication: every caller is an admin; set --tokens-file to require API tokens");
    }

    let mut builder = ServicesBuilder::new(store.clone())?
        .max_config_bytes(options.max_config_bytes)
        .credential_rotation_grace(options.credential_rotation_grace)
        .sync_lease(options.sync_lease)
        .timer_lease(options.timer_lease)
        .secret_struct_keys(options.secret_struct_keys.clone());
    for path in &options.descriptor_sets {
        let encoded = std::fs::read(path).map_err(|source| ServerError::ReadDescriptorSet { path: path.clone(), source })?;
        builder = builder.descriptor_set(&path.display().to_string(), encoded)?;
    }
    let services = builder.build()?;
    let edge = crate::gateway::EdgeLayer::new(
        services.descriptor_pool.clone(),
        &crate::gateway::EdgeOptions {
            rest_services: vec![
                pb::connector_service_server::SERVICE_NAME.to_owned(),
                pb::connector_sync_service_server::SERVICE_NAME.to_owned(),
            ],
            cors_allow_origins: options.cors_allow_origins.clone(),
            max_body_bytes: MAX_MESSAGE_BYTES,
            auth: auth.clone(),
        },
    )?;
    let health = services.health_reporter.clone();
    health.set_serving::<ConnectorServiceServer<ConnectorApi>>().await;
    let write_health_task =
        tokio::spawn(crate::write_health::report_write_health(store.clone(), health.clone(), crate::write_health::WRITE_HEALTH_INTERVAL));
    health.set_serving::<ConnectorSyncServiceServer<SyncWorkerApi>>().await;

    let purge_task = tokio::spawn(purge_request_ids(store.clone()));
    let lifecycle = Arc::clone(&services.lifecycle);
    let (stop_timers, timers_stop) = tokio::sync::watch::channel(false);
    let mut timers_task = tokio::spawn(run_timers(Arc::clone(&lifecycle), timers_stop));
    let reload_task = tokio::spawn(reload_tokens_on_hangup(options.tokens_file.clone(), auth.tokens.clone()));
    match listener.local_addr() {
        Ok(local_addr) => tracing::info!(%local_addr, "listening"),
        Err(error) => tracing::warn!(%error, "listening on an address the OS does not report"),
    }

    let (shutdown_started, shutdown_started_receiver) = tokio::sync::oneshot::channel();
    let stream_shutdown = StreamShutdown::new();
    let end_streams = stream_shutdown.layer();
    let waiting_claims = Arc::clone(&services.lifecycle);
    let signal = async move {
        shutdown.await;
        write_health_task.abort();
        let _ = write_health_task.await;
        tracing::info!("shutdown started: health is NOT_SERVING and no new connections are accepted");
        set_not_serving(&health).await;
        // Watch and reflection streams never end by themselves and would hold the drain.
        stream_shutdown.trigger();
        waiting_claims.stop_waiting();
        let _ = shutdown_started.send(());
    };
    let (incoming, accept_task) = limited_incoming(listener, options.connection_limits);
    // HTTP/1.1 is accepted for REST and gRPC-Web. The edge layer is outermost, so REST calls
    // pass every layer added after it, as gRPC calls do.
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(edge)
        .layer(end_streams)
        .layer(crate::limits::ResourceExhaustedLayer)
        .layer(AuthLayer::new(auth))
        .layer(AdmissionLayer::new(options.admission))
        .add_routes(services.into_routes());
    // NOTE: over TLS the HTTP/2 handshake deadline of the connection limit does not apply,
    // because the preface is encrypted. The TLS handshake has its own deadline instead.
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match tls {
        Some(acceptor) => {
            tracing::info!(client_certificates = options.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some()), "serving TLS");
            Box::pin(router.serve_with_incoming_shutdown(crate::tls::tls_incoming(incoming, acceptor), signal))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
    };

    // tonic waits without limit for open calls and streams to end; the grace period bounds it.
    let grace = options.shutdown_grace;
    let deadline = async move {
        if shutdown_started_receiver.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = serve => result?,
        () = deadline => tracing::warn!(grace_seconds = grace.as_secs_f64(), "calls still running after the grace period were cancelled"),
    }

    purge_task.abort();
    accept_task.abort();
    reload_task.abort();
    // The timers finish their round, so that no lease query lands after the release below.
    let _ = stop_timers.send(true);
    if tokio::time::timeout(TIMERS_STOP_LIMIT, &mut timers_task).await.is_err() {
        tracing::warn!(limit_seconds = TIMERS_STOP_LIMIT.as_secs(), "the timers did not stop in time and were cancelled");
        timers_task.abort();
        let _ = timers_task.await;
    }
    // The tasks hold the store; awaiting them makes sure the store is released on return.
    let _ = purge_task.await;
    lifecycle.release_timer_lease().await;
    store.close().await?;
    tracing::info!("stopped; every acknowledged write is durable");
    Ok(())
}

/// Fails when the options would serve without authentication on a non-loopback address.
/// Call it before binding, so that a refused configuration never opens the port.
pub fn check_exposure(listen: SocketAddr, options: &ServeOptions) -> Result<(), ServerError> {
    if options.tokens_file.is_none() && !listen.ip().is_loopback() && !options.insecure_no_auth {
        return Err(ServerError::Unprotected(listen));
    }
    Ok(())
}

/// Loads the tokens, or checks that running without them is allowed on this listener.
fn auth_policy(listener: &TcpListener, options: &ServeOptions) -> Result<AuthPolicy, ServerError> {
    let Some(path) = &options.tokens_file else {
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        check_exposure(local_addr, options)?;
        return Ok(AuthPolicy::disabled());
    };
    let entries = TokenFile::new(path).load_existing()?;
    if entries.is_empty() {
        tracing::warn!(tokens_file = %path.display(), "the tokens file has no tokens, so every call that needs one is rejected; create one with `connectord token create`");
    }
    tracing::info!(tokens_file = %path.display(), tokens = entries.len(), "API tokens loaded");
    Ok(AuthPolicy { tokens: Some(Arc::new(Tokens::new(&entries))), reflection_requires_auth: options.reflection_requires_auth })
}

/// Re-reads the tokens file on every SIGHUP. A file that cannot be read or parsed leaves
/// the current tokens in place.
async fn reload_tokens_on_hangup(path: Option<PathBuf>, tokens: Option<Arc<Tokens>>) {
    let (Some(path), Some(tokens)) = (path, tokens) else { return };
    #[cfg(unix)]
    {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; tokens reload only on restart");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match TokenFile::new(&path).load_existing() {
                Ok(entries) => {
                    tokens.replace(&entries);
                    tracing::info!(tokens_file = %path.display(), tokens = entries.len(), "API tokens reloaded");
                }
                Err(error) => tracing::error!(%error, "reloading API tokens failed; the previous tokens stay in force"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, tokens);
    }
}

async fn set_not_serving(health: &HealthReporter) {
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<ConnectorServiceServer<ConnectorApi>>().await;
    health.set_not_serving::<ConnectorSyncServiceServer<SyncWorkerApi>>().await;
}

/// Forgets request ids older than [`REQUEST_ID_RETENTION`], once an hour.
async fn purge_request_ids(store: Arc<dyn Store>) {
    let mut interval = tokio::time::interval(REQUEST_ID_PURGE_INTERVAL);
    loop {
        interval.tick().await;
        let cutoff = chrono::Utc::now() - REQUEST_ID_RETENTION;
        match store.purge_request_ids(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired request ids purged"),
            Err(error) => tracing::warn!(%error, "purging expired request ids failed; retrying in an hour"),
        }
    }
}

/// Returns a future that completes on SIGINT or SIGTERM. The handlers are installed by this
/// call, not at the future's first poll, so a signal that arrives while the server starts
/// is not lost to the default action, which ends the process at once.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            match streams {
                (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                    _ = interrupt.recv() => tracing::info!("SIGINT received"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                },
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for SIGINT and SIGTERM; only Ctrl-C stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
