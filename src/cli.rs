//! Command-line flags. Every flag can also be set through the environment variable named in
//! its help text.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::server::ServeOptions;

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
pub enum Command {
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Write the API's encoded FileDescriptorSet, with the google.api.http rules and the
    /// google.rpc error types, for Envoy's gRPC-JSON transcoder and other tools.
    DescriptorSet(DescriptorSetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DescriptorSetArgs {
    /// File to write; replaced if it exists.
    #[arg(long, short)]
    pub output: PathBuf,
}

impl Cli {
    /// Returns the serve flags, whether or not `serve` was written out. With another
    /// subcommand they are the defaults.
    pub fn into_serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            Some(Command::DescriptorSet(_)) | None => self.serve,
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
    #[arg(long, env = "CONNECTORD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory of the embedded database; created if missing.
    #[arg(long, env = "CONNECTORD_DATA_DIR", default_value = "./connectord-data")]
    pub data_dir: PathBuf,

    /// Encoded FileDescriptorSet (as written by `protoc --include_imports -o` or `buf build -o`)
    /// whose messages become valid config types. Repeatable; comma-separated in the environment.
    #[arg(long = "descriptor-set", env = "CONNECTORD_DESCRIPTOR_SETS", value_delimiter = ',')]
    pub descriptor_sets: Vec<PathBuf>,

    /// Largest accepted connector config, in bytes of its encoded payload.
    #[arg(long, env = "CONNECTORD_MAX_CONFIG_BYTES", default_value_t = 64 * 1024)]
    pub max_config_bytes: usize,

    /// Log line format; filter with RUST_LOG (default: info).
    #[arg(long, env = "CONNECTORD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Time that in-flight calls get to finish after SIGINT or SIGTERM, such as 10s or 1m.
    #[arg(long, env = "CONNECTORD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Origin that browsers may call the REST and gRPC-Web API from, such as
    /// https://app.example, or * for any. Repeatable; comma-separated in the environment.
    /// None by default, which disables CORS.
    #[arg(long = "cors-allow-origin", env = "CONNECTORD_CORS_ALLOW_ORIGINS", value_delimiter = ',', value_parser = parse_cors_origin)]
    pub cors_allow_origins: Vec<String>,
}

fn parse_cors_origin(origin: &str) -> Result<String, crate::gateway::OriginError> {
    crate::gateway::parse_origin(origin).map(|_| origin.to_owned())
}

impl ServeArgs {
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            data_dir: self.data_dir.clone(),
            descriptor_sets: self.descriptor_sets.clone(),
            max_config_bytes: self.max_config_bytes,
            shutdown_grace: self.shutdown_grace,
            cors_allow_origins: self.cors_allow_origins.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["connectord", "--listen", "127.0.0.1:7000"]).unwrap();
        assert_eq!(cli.into_serve_args().listen.port(), 7000);
        let cli = Cli::try_parse_from(["connectord", "serve", "--shutdown-grace", "3s"]).unwrap();
        assert_eq!(cli.into_serve_args().shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn cors_origins_repeat_and_are_validated() {
        let cli = Cli::try_parse_from([
            "connectord",
            "--cors-allow-origin",
            "https://a.example",
            "--cors-allow-origin",
            "http://localhost:3000",
        ])
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
