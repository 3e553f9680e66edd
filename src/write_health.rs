//! Reports through gRPC health whether the connector service can take writes.
//!
//! While the store rejects writes for a lasting reason (a full disk, a failed flush), the
//! connector service is NOT_SERVING and the overall server status `""` stays SERVING,
//! because reads still work. The status turns back to SERVING once writes can succeed.

use std::{sync::Arc, time::Duration};

use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{pb::connector_service_server::SERVICE_NAME, store::Store};

/// How often the store's write state is checked.
pub const WRITE_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Sets the connector service's health from [`Store::check_writable`] every `interval`,
/// forever; abort the task before setting NOT_SERVING for shutdown.
pub async fn report_write_health(store: Arc<dyn Store>, health: HealthReporter, interval: Duration) {
    let mut serving = true;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let state = store.check_writable();
        match (&state, serving) {
            (Err(error), true) => {
                tracing::error!(%error, "writes fail; the connector service reports NOT_SERVING until they succeed again");
                health.set_service_status(SERVICE_NAME, ServingStatus::NotServing).await;
                serving = false;
            }
            (Ok(()), false) => {
                tracing::info!("writes succeed again; the connector service reports SERVING");
                health.set_service_status(SERVICE_NAME, ServingStatus::Serving).await;
                serving = true;
            }
            _ => {}
        }
    }
}
