//! The connectord binary: parses flags, sets up logging and runs the server.

use std::process::ExitCode;

use clap::Parser;
use connectord::{
    cli::{Cli, Command},
    gateway::descriptors,
    server, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::DescriptorSet(args)) = &cli.command {
        return match descriptors::write_api_descriptor_set(&args.output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("connectord: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let args = cli.into_serve_args();
    telemetry::init(args.log_format);

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %args.listen, %error, "cannot listen; is the port in use? Set --listen");
            return ExitCode::FAILURE;
        }
    };
    match server::run(listener, args.serve_options(), server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "connectord stopped with an error");
            ExitCode::FAILURE
        }
    }
}
