//! Logging setup: tracing with `RUST_LOG` filtering, as text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;

/// Installs the global subscriber; `RUST_LOG` filters, with `info` as the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let colors = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => registry.with(fmt::layer().with_ansi(colors).with_writer(std::io::stderr)).init(),
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(std::io::stderr)).init()
        }
    }
}
