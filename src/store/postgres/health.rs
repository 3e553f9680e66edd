//! Whether the database can be reached, as store calls and a probe once a second see it.
//!
//! [`Store::check_writable`](crate::store::Store::check_writable) returns the last outcome,
//! so health turns NOT_SERVING within a second of losing the database and SERVING again
//! within a second of its return, without a query per health check.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use deadpool_postgres::Pool;

use super::errors::{driver, from_pool};
use crate::store::StoreError;

/// Pause between two probes.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Reason of the last failure to reach the database, or `None` while it responds.
#[derive(Debug, Default)]
pub(super) struct Reachability {
    failure: Mutex<Option<String>>,
}

impl Reachability {
    /// Records the outcome of a call. Only changes are logged, so an outage logs two lines.
    pub(super) fn observe<T>(&self, result: &Result<T, StoreError>) {
        let mut failure = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Err(StoreError::Unavailable(reason)) => {
                if failure.is_none() {
                    tracing::warn!(%reason, "the database cannot be reached; calls fail with UNAVAILABLE until it responds again");
                }
                *failure = Some(reason.clone());
            }
            Ok(_) => {
                if failure.take().is_some() {
                    tracing::info!("the database responds again");
                }
            }
            Err(_) => {}
        }
    }

    /// Returns the error of the last failed call or probe, or `Ok` when the last one
    /// reached the database.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let failure = self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*failure {
            Some(reason) => Err(StoreError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }
}

/// Runs `SELECT 1` on a pooled connection every [`PROBE_INTERVAL`], each bounded by
/// `timeout`, until the task is aborted.
pub(super) async fn probe(pool: Pool, reachability: Arc<Reachability>, timeout: Duration) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged_failure = false;
    loop {
        interval.tick().await;
        let outcome = tokio::time::timeout(timeout, async {
            let client = pool.get().await.map_err(|error| (error.to_string(), from_pool(error)))?;
            client.simple_query("SELECT 1").await.map_err(|error| (error.to_string(), driver(error)))?;
            Ok::<(), (String, StoreError)>(())
        })
        .await
        .unwrap_or_else(|_| {
            let reason = format!("the database did not respond within {timeout:?}");
            Err((reason.clone(), StoreError::Unavailable(reason)))
        });

        match outcome {
            Ok(()) => {
                logged_failure = false;
                reachability.observe(&Ok(()));
            }
            Err((detail, error)) => {
                if !logged_failure {
                    tracing::warn!(%detail, "database probe failed");
                    logged_failure = true;
                }
                // A probe that reaches the database but fails otherwise (a permission
                // change, say) still counts as unreachable, so health reports it.
                let error = match error {
                    StoreError::Unavailable(reason) => StoreError::Unavailable(reason),
                    other => StoreError::Unavailable(other.to_string()),
                };
                reachability.observe::<()>(&Err(error));
            }
        }
    }
}
