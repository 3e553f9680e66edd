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
    let args = match Cli::parse().into_command() {
        Command::Serve(args) => args,
        Command::Token(command) => return report(command.run().map(|output| print!("{output}"))),
        Command::DescriptorSet(args) => return report(descriptors::write_api_descriptor_set(&args.output)),
        Command::Migrate(args) => return report(migrate(&args).await),
    };
    telemetry::init(args.log_format);
    let options = args.serve_options();
    if let Err(error) = server::check_exposure(args.listen, &options) {
        tracing::error!(%error, "not starting");
        return ExitCode::FAILURE;
    }

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            let hint = match error.kind() {
                std::io::ErrorKind::AddrInUse => "another process uses the port; choose another with --listen",
                std::io::ErrorKind::AddrNotAvailable => "the address is not one of this host's; choose another with --listen",
                std::io::ErrorKind::PermissionDenied => "ports below 1024 need extra privileges; choose another with --listen",
                _ => "check --listen",
            };
            tracing::error!(listen = %args.listen, %error, "cannot listen: {hint}");
            return ExitCode::FAILURE;
        }
    };
    match server::run(listener, options, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "connectord stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Runs `connectord migrate` and prints what it copied.
async fn migrate(args: &connectord::cli::MigrateArgs) -> Result<(), String> {
    use connectord::store::{PostgresStore, PostgresStoreOptions, SledStore, SledStoreOptions, migrate};

    if !args.from.join("db").is_file() {
        return Err(format!("{} holds no sled database; pass the server's --data-dir", args.from.display()));
    }
    let source = SledStore::open(&SledStoreOptions::new(&args.from)).map_err(|error| error.to_string())?;
    let target = PostgresStore::open(&PostgresStoreOptions::new(args.to.clone())).await.map_err(|error| error.to_string())?;
    let report = migrate::copy_sled_to_postgres(&source, &target).await.map_err(|error| error.to_string())?;
    let records = report.records;
    println!(
        "copied {} connectors, {} syncs, {} credentials and {} request ids to {}; {} records were new; the copy matches the source",
        records.connectors, records.syncs, records.credentials, records.request_ids, args.to, report.inserted
    );
    Ok(())
}

/// Exit status of a command that does not serve: errors go to standard error.
fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("connectord: {error}");
            ExitCode::FAILURE
        }
    }
}
