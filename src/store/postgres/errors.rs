//! The one mapping from driver and pool errors to [`StoreError`].
//!
//! Lost connections, timeouts and a database that is starting, stopping or read-only
//! become [`StoreError::Unavailable`], with a reason that is safe to show to a client. The
//! driver's own text goes to the log. Unique violations and serialization failures become
//! [`StoreError::Conflict`], so that the domain retries or reports a lost race.

use deadpool_postgres::{PoolError, tokio_postgres::error::SqlState};

use crate::store::StoreError;

/// Maps a driver error. `conflict` words a unique violation from the constraint's name;
/// it returns `None` for constraints it does not know, which get a generic message.
pub(super) fn from_driver(error: tokio_postgres::Error, conflict: impl FnOnce(&str) -> Option<String>) -> StoreError {
    let Some(code) = error.code() else {
        // Errors without an SQLSTATE come from the connection: closed, reset or timed out.
        tracing::debug!(%error, "database connection failed");
        return StoreError::Unavailable(if error.is_closed() {
            "the connection to the database was lost".to_owned()
        } else {
            "the connection to the database failed".to_owned()
        });
    };

    if *code == SqlState::UNIQUE_VIOLATION {
        let constraint = error.as_db_error().and_then(|db| db.constraint()).unwrap_or_default();
        return StoreError::Conflict(conflict(constraint).unwrap_or_else(|| format!("uniqueness rule {constraint} would break")));
    }
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return StoreError::Conflict("the write raced with another write".to_owned());
    }
    if let Some(reason) = unavailable_reason(code) {
        tracing::debug!(%error, "database unavailable");
        return StoreError::Unavailable(reason.to_owned());
    }
    if *code == SqlState::DISK_FULL {
        return StoreError::NoSpace(error.to_string());
    }
    StoreError::Backend(format!("PostgreSQL: {error}"))
}

/// Maps a driver error of a statement that has no uniqueness rule to break.
pub(super) fn driver(error: tokio_postgres::Error) -> StoreError {
    from_driver(error, |_| None)
}

/// Maps a failure to get a connection from the pool.
pub(super) fn from_pool(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => driver(error),
        PoolError::Timeout(kind) => {
            tracing::debug!(?kind, "no database connection within the pool's timeout");
            StoreError::Unavailable("no database connection became available in time".to_owned())
        }
        PoolError::Closed => StoreError::Closed,
        PoolError::PostCreateHook(error) => {
            tracing::debug!(%error, "new database connection rejected");
            StoreError::Unavailable("a new database connection could not be set up".to_owned())
        }
        PoolError::NoRuntimeSpecified => StoreError::Backend("the connection pool has no runtime for its timeouts".to_owned()),
    }
}

/// Returns why the database cannot serve now, for error codes after which a later retry
/// may succeed: a timeout, a restart, too many connections, or a read-only standby.
fn unavailable_reason(code: &SqlState) -> Option<&'static str> {
    let reason = match code {
        code if *code == SqlState::QUERY_CANCELED => "a database statement ran past the statement timeout",
        code if *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN || *code == SqlState::CANNOT_CONNECT_NOW => {
            "the database is restarting"
        }
        code if *code == SqlState::TOO_MANY_CONNECTIONS => "the database has no free connection slots",
        code if *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => "the database ended a transaction that waited too long",
        code if *code == SqlState::READ_ONLY_SQL_TRANSACTION => "the database is read-only",
        code if *code == SqlState::LOCK_NOT_AVAILABLE => "a database lock could not be taken in time",
        code if code.code().starts_with("08") => "the connection to the database failed",
        _ => return None,
    };
    Some(reason)
}

/// Converts a revision to its column value. Revisions start at 1 and grow by one per
/// write, so they stay far below `i64::MAX`.
pub(super) fn revision_column(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(|_| StoreError::Backend(format!("revision {revision} does not fit in a bigint")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_codes_are_unavailable() {
        assert!(unavailable_reason(&SqlState::CONNECTION_FAILURE).is_some());
        assert!(unavailable_reason(&SqlState::ADMIN_SHUTDOWN).is_some());
        assert!(unavailable_reason(&SqlState::QUERY_CANCELED).is_some());
        assert!(unavailable_reason(&SqlState::SYNTAX_ERROR).is_none());
    }

    #[test]
    fn revision_beyond_bigint_is_rejected() {
        assert_eq!(revision_column(7).unwrap(), 7);
        assert!(matches!(revision_column(u64::MAX), Err(StoreError::Backend(_))));
    }
}
