//! The audit log: one structured event per mutating call on the tracing target
//! `connectord::audit`, with the caller, the RPC, the ids, the changed field paths (never
//! values) and the result code. A failed call lists its field paths as `attempted` instead,
//! because it changed nothing.

use tonic::Request;

use super::status::code_of;
use crate::{auth::Caller, domain::Error};

/// Audit event of one call, filled in as the handler learns the ids and changes.
pub(super) struct Audit {
    rpc: &'static str,
    caller: Option<Caller>,
    app_id: String,
    connector_id: String,
    changed: Vec<String>,
    worker_client_id: Option<String>,
}

impl Audit {
    pub(super) fn start<T>(rpc: &'static str, request: &Request<T>) -> Self {
        Self {
            rpc,
            caller: request.extensions().get::<Caller>().cloned(),
            app_id: String::new(),
            connector_id: String::new(),
            changed: Vec::new(),
            worker_client_id: None,
        }
    }

    /// Names the caller of a worker call by its credential's client id.
    pub(super) fn worker(&mut self, client_id: &str) {
        self.worker_client_id = Some(client_id.to_owned());
    }

    pub(super) fn target(&mut self, app_id: &str, connector_id: &str) {
        self.app_id = app_id.to_owned();
        self.connector_id = connector_id.to_owned();
    }

    pub(super) fn changed<S: Into<String>>(&mut self, paths: impl IntoIterator<Item = S>) {
        self.changed = paths.into_iter().map(Into::into).collect();
    }

    /// Logs the event with the call's result code.
    pub(super) fn finish<T>(self, result: &Result<T, Error>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(error) => code_of(error),
        };
        let paths = self.changed.join(",");
        let (changed, attempted) = if code == tonic::Code::Ok { (paths.as_str(), "") } else { ("", paths.as_str()) };
        let (caller, role) = match (&self.caller, &self.worker_client_id) {
            (_, Some(client_id)) => (client_id.as_str(), "connector-credential"),
            (Some(caller), None) => (caller.name.as_str(), caller.role.as_str()),
            (None, None) => ("unauthenticated", "none"),
        };
        tracing::info!(
            target: "connectord::audit",
            caller,
            role,
            rpc = self.rpc,
            app_id = %self.app_id,
            connector_id = %self.connector_id,
            // Comma-separated, so JSON logs carry plain text rather than Rust debug syntax.
            changed,
            attempted,
            code = ?code,
            "audit"
        );
    }
}
