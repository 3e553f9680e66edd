//! Command-line flags. Every flag can also be set through the environment variable named in
//! its help text.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::BoolishValueParser};

use crate::{
    admission::AdmissionLimits,
    connection_limit::ConnectionLimits,
    server::{DEFAULT_MIN_FREE_DISK_BYTES, DEFAULT_SLED_CACHE_BYTES, ServeOptions},
    store::{DatabaseUrl, PostgresStoreOptions},
};

#[derive(Debug, Parser)]
#[command(name = "connectord", version, about = "A self-hosted connector registry with a gRPC API.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Flags of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per process, so its size does not matter")]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Manage API tokens in a tokens file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write the API's encoded FileDescriptorSet, with the google.api.http rules and the
    /// google.rpc error types, for Envoy's gRPC-JSON transcoder and other tools.
    DescriptorSet(DescriptorSetArgs),
    /// Copy every connector, credential (secret hashes only) and sync from a sled data
    /// directory into PostgreSQL, then verify counts and contents. Safe to run again after
    /// an interruption. Stop every server on both stores first.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// sled data directory to copy from; no records are written to it.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// PostgreSQL database to copy into, as a postgres:// URL; its schema is created or
    /// migrated first.
    #[arg(long, value_name = "URL")]
    pub to: DatabaseUrl,
}

#[derive(Debug, Clone, Args)]
pub struct DescriptorSetArgs {
    /// File to write; replaced if it exists.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token, print it once, and append its hash to the tokens file.
    Create {
        /// Name that identifies the token in logs and in `token revoke`.
        #[arg(long)]
        name: String,
        /// admin (everything), editor (everything but RotateCredential and RevokeCredential)
        /// or viewer (reads).
        #[arg(long)]
        role: crate::auth::Role,
        /// Tokens file of the server, created if missing. It keeps only hashes of tokens.
        #[arg(long, env = "CONNECTORD_TOKENS_FILE", default_value = "./connectord-tokens.jsonl")]
        tokens_file: PathBuf,
    },
    /// Remove a token from the tokens file; a running server drops it on SIGHUP.
    Revoke {
        /// Name that the token was created with.
        #[arg(long)]
        name: String,
        /// Tokens file of the server.
        #[arg(long, env = "CONNECTORD_TOKENS_FILE", default_value = "./connectord-tokens.jsonl")]
        tokens_file: PathBuf,
    },
}

impl TokenCommand {
    /// Runs the command and returns what to print on standard output.
    pub fn run(&self) -> Result<String, crate::auth::TokenError> {
        match self {
            TokenCommand::Create { name, role, tokens_file } => {
                let token = crate::auth::TokenFile::new(tokens_file).create(name, *role)?;
                Ok(format!("{token}\n"))
            }
            TokenCommand::Revoke { name, tokens_file } => {
                crate::auth::TokenFile::new(tokens_file).revoke(name)?;
                Ok(format!("token {name:?} removed from {}; send SIGHUP to running servers\n", tokens_file.display()))
            }
        }
    }
}

impl Cli {
    /// Returns the command to run; `serve` when none was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }

    /// Returns the serve flags, whether or not `serve` was written out.
    pub fn into_serve_args(self) -> ServeArgs {
        match self.into_command() {
            Command::Serve(args) => args,
            Command::Token(_) | Command::DescriptorSet(_) | Command::Migrate(_) => {
                panic!("into_serve_args called for a command that does not serve")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CONNECTORD_LISTEN", default_value = "127.0.0.1:50051", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Directory of the embedded database; created if missing. Unused with --store.
    #[arg(long, env = "CONNECTORD_DATA_DIR", default_value = "./connectord-data")]
    pub data_dir: PathBuf,

    /// PostgreSQL database to keep the data in, in place of the embedded database, as a
    /// URL such as postgres://user:password@host:5432/connectord?connect_timeout=5.
    /// Replicas that share one database serve the same connectors.
    #[arg(long = "store", env = "CONNECTORD_STORE", value_name = "URL")]
    pub store_url: Option<DatabaseUrl>,

    /// Maximum number of connections to PostgreSQL that this server opens.
    #[arg(long, env = "CONNECTORD_POSTGRES_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub postgres_pool_size: u16,

    /// Maximum time one PostgreSQL statement may run, such as 5s. It also bounds the wait
    /// for a free connection.
    #[arg(long, env = "CONNECTORD_POSTGRES_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub postgres_statement_timeout: Duration,

    /// Encoded FileDescriptorSet (as written by `protoc --include_imports -o` or `buf build -o`)
    /// whose messages become valid config types. Repeatable; comma-separated in the environment.
    #[arg(long = "descriptor-set", env = "CONNECTORD_DESCRIPTOR_SETS", value_delimiter = ',')]
    pub descriptor_sets: Vec<PathBuf>,

    /// Largest accepted connector config, in bytes of its encoded payload.
    #[arg(long, env = "CONNECTORD_MAX_CONFIG_BYTES", default_value_t = 64 * 1024, value_parser = parse_positive)]
    pub max_config_bytes: usize,

    /// Log line format; filter with RUST_LOG (default: info).
    #[arg(long, env = "CONNECTORD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Time that in-flight calls get to finish after SIGINT or SIGTERM, such as 10s or 1m.
    #[arg(long, env = "CONNECTORD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Maximum number of open TCP connections; connections over it are closed at once.
    #[arg(long, env = "CONNECTORD_MAX_CONNECTIONS", default_value_t = 1024, value_parser = parse_positive)]
    pub max_connections: usize,

    /// Time a new connection gets to send the HTTP/2 preface and settings, such as 10s.
    #[arg(long, env = "CONNECTORD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub handshake_timeout: Duration,

    /// Maximum number of connector calls processed at once.
    #[arg(long, env = "CONNECTORD_MAX_CONCURRENT_REQUESTS", default_value_t = 256, value_parser = parse_positive)]
    pub max_concurrent_requests: usize,

    /// Maximum number of connector calls waiting for a slot; calls beyond it fail with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "CONNECTORD_MAX_QUEUED_REQUESTS", default_value_t = 1024)]
    pub max_queued_requests: usize,

    /// Maximum wait of a call for a slot before it fails with RESOURCE_EXHAUSTED, such as 1s.
    #[arg(long, env = "CONNECTORD_QUEUE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub queue_timeout: Duration,

    /// Free space in bytes kept on the data directory's file system; below it writes fail
    /// with RESOURCE_EXHAUSTED. 0 turns the check off.
    #[arg(long, env = "CONNECTORD_MIN_FREE_DISK_BYTES", default_value_t = DEFAULT_MIN_FREE_DISK_BYTES)]
    pub min_free_disk_bytes: u64,

    /// Size in bytes of sled's page cache. Pages of a data set larger than the cache are
    /// read and decoded again on a miss, so reads slow down as the data set grows past it.
    #[arg(long, env = "CONNECTORD_SLED_CACHE_BYTES", default_value_t = DEFAULT_SLED_CACHE_BYTES)]
    pub sled_cache_bytes: u64,

    /// UNSAFE, for crash tests only: acknowledge writes before they are durable, so a crash
    /// loses them.
    #[arg(long, env = "CONNECTORD_UNSAFE_SKIP_FLUSH_FOR_TESTS", hide = true, value_parser = BoolishValueParser::new())]
    pub unsafe_skip_flush_for_tests: bool,
    /// How long older credentials of a connector keep working after RotateCredential, such as 24h.
    #[arg(long, env = "CONNECTORD_CREDENTIAL_ROTATION_GRACE", default_value = "24h", value_parser = parse_duration)]
    pub credential_rotation_grace: Duration,

    /// How long a claimed sync stays with its worker without a heartbeat before it is queued again, such as 5m.
    #[arg(long, env = "CONNECTORD_SYNC_LEASE", default_value = "5m", value_parser = parse_sync_lease)]
    pub sync_lease: Duration,

    /// How long one replica keeps running lease expiry and the scheduler after its last
    /// renewal, such as 10s. Replicas on one PostgreSQL database take turns; when the one
    /// running them stops, another takes over within this time. Renewed every second, so
    /// it must be longer than 1s.
    #[arg(long, env = "CONNECTORD_TIMER_LEASE", default_value = "10s", value_parser = parse_timer_lease)]
    pub timer_lease: Duration,

    /// API tokens file (one JSON object per line, written by `connectord token create`);
    /// reloaded on SIGHUP. Without it, only a loopback address may be used.
    #[arg(long, env = "CONNECTORD_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Serve without authentication on a non-loopback address. Anyone who reaches the port
    /// can read and change every connector.
    #[arg(long, env = "CONNECTORD_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub insecure_no_auth: bool,

    /// Require an API token (any role) for server reflection.
    #[arg(long, env = "CONNECTORD_REFLECTION_REQUIRES_AUTH", value_parser = BoolishValueParser::new())]
    pub reflection_requires_auth: bool,

    /// Keys of google.protobuf.Struct configs whose values are secrets, at any depth; comma-separated. A key that was secret when a config was written stays secret in that config after the list drops it
    #[arg(
        long,
        env = "CONNECTORD_SECRET_STRUCT_KEYS",
        value_delimiter = ',',
        value_parser = parse_secret_key,
        default_value = "password,secret,token,api_key,client_secret,private_key"
    )]
    pub secret_struct_keys: Vec<String>,

    /// PEM certificate chain; with --tls-key, serves gRPC, gRPC-Web and REST over TLS.
    #[arg(long, env = "CONNECTORD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CONNECTORD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates; when set, clients must present a certificate signed by one (mutual TLS).
    #[arg(long, env = "CONNECTORD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Origin that browsers may call the REST and gRPC-Web API from, such as
    /// https://app.example, or * for any. Repeatable; comma-separated in the environment.
    /// None by default, which disables CORS.
    #[arg(long = "cors-allow-origin", env = "CONNECTORD_CORS_ALLOW_ORIGINS", value_delimiter = ',', value_parser = parse_cors_origin)]
    pub cors_allow_origins: Vec<String>,
}

fn parse_cors_origin(origin: &str) -> Result<String, crate::gateway::OriginError> {
    crate::gateway::parse_origin(origin).map(|_| origin.to_owned())
}

/// Parses an IP address and port. Host names are not resolved, so the address that the
/// server binds to is the one written on the command line.
fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        "expected an IP address and a port, such as 127.0.0.1:50051 or [::1]:50051; host names such as localhost are not resolved"
            .to_owned()
    })
}

/// Parses a Struct key name and rejects an empty one, as in `a,,b` or an empty variable.
/// An empty key would hide nothing, and an operator who meant to list keys would not notice.
fn parse_secret_key(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("empty key; list key names separated by commas, such as password,api_key".to_owned());
    }
    Ok(value.to_owned())
}

/// Parses a duration such as `10s`, naming the expected form when the value does not fit it.
fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("not a duration ({error}); use a number and a unit, such as 500ms, 10s, 5m or 24h"))
}

/// Parses a duration that must not be zero, such as a timeout that would otherwise end
/// every connection at once.
fn parse_nonzero_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err("must be longer than 0s".to_owned());
    }
    Ok(duration)
}

/// Parses a sync lease of at least a second, because a shorter one would take syncs away
/// from workers between two heartbeats.
fn parse_sync_lease(value: &str) -> Result<Duration, String> {
    let lease = parse_duration(value)?;
    if lease < Duration::from_secs(1) {
        return Err("must be at least 1s, so workers have time to send heartbeats".to_owned());
    }
    Ok(lease)
}

fn parse_timer_lease(value: &str) -> Result<Duration, String> {
    let lease = parse_duration(value)?;
    if lease <= crate::domain::lifecycle::TIMER_INTERVAL {
        return Err(format!("must be longer than the renewal interval of {:?}", crate::domain::lifecycle::TIMER_INTERVAL));
    }
    Ok(lease)
}

fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(number) => Ok(number),
        Err(error) => Err(error.to_string()),
    }
}

impl ServeArgs {
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            data_dir: self.data_dir.clone(),
            postgres: self.store_url.clone().map(|url| PostgresStoreOptions {
                url,
                pool_size: usize::from(self.postgres_pool_size),
                statement_timeout: self.postgres_statement_timeout,
            }),
            descriptor_sets: self.descriptor_sets.clone(),
            max_config_bytes: self.max_config_bytes,
            shutdown_grace: self.shutdown_grace,
            connection_limits: ConnectionLimits { max_connections: self.max_connections, handshake_timeout: self.handshake_timeout },
            admission: AdmissionLimits {
                max_concurrent_requests: self.max_concurrent_requests,
                max_queued_requests: self.max_queued_requests,
                queue_timeout: self.queue_timeout,
            },
            min_free_disk_bytes: self.min_free_disk_bytes,
            sled_cache_bytes: self.sled_cache_bytes,
            unsafe_skip_flush_for_tests: self.unsafe_skip_flush_for_tests,
            credential_rotation_grace: self.credential_rotation_grace,
            sync_lease: self.sync_lease,
            timer_lease: self.timer_lease,
            tokens_file: self.tokens_file.clone(),
            insecure_no_auth: self.insecure_no_auth,
            reflection_requires_auth: self.reflection_requires_auth,
            secret_struct_keys: self.secret_struct_keys.clone(),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(crate::tls::TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() })
                }
                _ => None,
            },
            cors_allow_origins: self.cors_allow_origins.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_duration_names_the_expected_form() {
        let error = Cli::try_parse_from(["connectord", "--shutdown-grace", "banana"]).unwrap_err().to_string();
        assert!(error.contains("such as 500ms, 10s, 5m or 24h"), "{error}");
    }

    #[test]
    fn zero_limits_and_timeouts_are_rejected() {
        for (flag, value, expected) in [
            ("--sync-lease", "0s", "at least 1s"),
            ("--sync-lease", "500ms", "at least 1s"),
            ("--max-config-bytes", "0", "at least 1"),
            ("--handshake-timeout", "0s", "longer than 0s"),
        ] {
            let error = Cli::try_parse_from(["connectord", flag, value]).unwrap_err().to_string();
            assert!(error.contains(expected), "{flag} {value}: {error}");
        }
        assert!(Cli::try_parse_from(["connectord", "--sync-lease", "1s", "--max-config-bytes", "1"]).is_ok());
    }

    #[test]
    fn empty_secret_struct_key_is_rejected() {
        for keys in [",", "password,,api_key", " "] {
            let error = Cli::try_parse_from(["connectord", "--secret-struct-keys", keys]).unwrap_err().to_string();
            assert!(error.contains("empty key"), "{keys:?}: {error}");
        }
        assert!(Cli::try_parse_from(["connectord", "--secret-struct-keys", "password,api_key"]).is_ok());
    }

    #[test]
    fn listen_takes_an_ip_address_only() {
        let error = Cli::try_parse_from(["connectord", "--listen", "localhost:7000"]).unwrap_err().to_string();
        assert!(error.contains("127.0.0.1:50051"), "{error}");
        assert!(error.contains("host names"), "{error}");
        let cli = Cli::try_parse_from(["connectord", "--listen", "[::1]:7000"]).unwrap();
        assert!(cli.into_serve_args().listen.is_ipv6());
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["connectord", "--listen", "127.0.0.1:7000"]).unwrap();
        assert_eq!(cli.into_serve_args().listen.port(), 7000);
        let cli = Cli::try_parse_from(["connectord", "serve", "--shutdown-grace", "3s"]).unwrap();
        assert_eq!(cli.into_serve_args().shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn limit_flags_reach_serve_options() {
        let cli = Cli::try_parse_from([
            "connectord",
            "--max-connections",
            "8",
            "--handshake-timeout",
            "2s",
            "--max-concurrent-requests",
            "4",
            "--sled-cache-bytes",
            "1048576",
        ])
        .unwrap();
        let options = cli.into_serve_args().serve_options();
        assert_eq!(options.sled_cache_bytes, 1_048_576);
        assert_eq!(options.connection_limits.max_connections, 8);
        assert_eq!(options.connection_limits.handshake_timeout, Duration::from_secs(2));
        assert_eq!(options.admission.max_concurrent_requests, 4);
        assert!(!options.unsafe_skip_flush_for_tests);
    }

    #[test]
    fn limit_defaults_match_serve_options_defaults() {
        let from_flags = Cli::try_parse_from(["connectord"]).unwrap().into_serve_args().serve_options();
        let from_library = ServeOptions::new("./connectord-data");
        assert_eq!(from_flags.connection_limits.max_connections, from_library.connection_limits.max_connections);
        assert_eq!(from_flags.connection_limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(from_flags.admission, from_library.admission);
        assert_eq!(from_flags.min_free_disk_bytes, from_library.min_free_disk_bytes);
        assert_eq!(from_flags.sled_cache_bytes, from_library.sled_cache_bytes);
    }

    #[test]
    fn timer_lease_must_outlast_renewal() {
        let cli = Cli::try_parse_from(["connectord", "--timer-lease", "3s"]).unwrap();
        assert_eq!(cli.into_serve_args().serve_options().timer_lease, Duration::from_secs(3));
        let error = Cli::try_parse_from(["connectord", "--timer-lease", "1s"]).unwrap_err();
        assert!(error.to_string().contains("longer than the renewal interval"), "{error}");
    }

    #[test]
    fn migrate_takes_a_directory_and_a_url() {
        let cli = Cli::try_parse_from(["connectord", "migrate", "--from", "./data", "--to", "postgres://app@127.0.0.1/db"]).unwrap();
        let Some(Command::Migrate(args)) = cli.command else { panic!("migrate was not parsed") };
        assert_eq!(args.from, PathBuf::from("./data"));
        assert_eq!(args.to.expose(), "postgres://app@127.0.0.1/db");
        assert!(Cli::try_parse_from(["connectord", "migrate", "--from", "./data", "--to", "./other"]).is_err());
    }

    #[test]
    fn zero_max_connections_is_rejected() {
        let error = Cli::try_parse_from(["connectord", "--max-connections", "0"]).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
    }

    #[test]
    fn token_create_parses_role() {
        let cli = Cli::try_parse_from(["connectord", "token", "create", "--name", "ci", "--role", "viewer"]).unwrap();
        let Command::Token(TokenCommand::Create { role, .. }) = cli.into_command() else { panic!() };
        assert_eq!(role, crate::auth::Role::Viewer);
        assert!(Cli::try_parse_from(["connectord", "token", "create", "--name", "ci", "--role", "boss"]).is_err());
    }

    #[test]
    fn cors_origins_repeat_and_are_validated() {
        let cli =
            Cli::try_parse_from(["connectord", "--cors-allow-origin", "https://a.example", "--cors-allow-origin", "http://localhost:3000"])
                .unwrap();
        assert_eq!(cli.into_serve_args().cors_allow_origins, ["https://a.example", "http://localhost:3000"]);
        assert!(Cli::try_parse_from(["connectord", "--cors-allow-origin", "a.example"]).is_err());
        let cli = Cli::try_parse_from(["connectord"]).unwrap();
        assert!(cli.into_serve_args().cors_allow_origins.is_empty());
    }

    #[test]
    fn descriptor_set_subcommand_takes_an_output() {
        let cli = Cli::try_parse_from(["connectord", "descriptor-set", "--output", "api.pb"]).unwrap();
        let Some(Command::DescriptorSet(args)) = cli.command else { panic!("descriptor-set was not parsed") };
        assert_eq!(args.output, PathBuf::from("api.pb"));
    }

    #[test]
    fn descriptor_set_flag_repeats() {
        let cli = Cli::try_parse_from(["connectord", "--descriptor-set", "a.bin", "--descriptor-set", "b.bin"]).unwrap();
        assert_eq!(cli.into_serve_args().descriptor_sets.len(), 2);
    }
}
