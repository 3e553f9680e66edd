//! The choice of storage backend at start-up: the embedded sled database (the default) or
//! a PostgreSQL database shared by several replicas.

use std::sync::Arc;

use super::{PostgresStore, PostgresStoreOptions, SledStore, SledStoreOptions, Store, postgres, sled_store};

/// Location of the store's data.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    Sled(SledStoreOptions),
    Postgres(PostgresStoreOptions),
}

/// Failure to open the chosen store.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(transparent)]
    Sled(#[from] sled_store::OpenError),
    #[error(transparent)]
    Postgres(#[from] postgres::OpenError),
}

impl StoreBackend {
    /// Describes the location for logs, without secrets.
    pub fn describe(&self) -> String {
        match self {
            StoreBackend::Sled(options) => format!("sled database in {}", options.path.display()),
            StoreBackend::Postgres(options) => format!("PostgreSQL database {}", options.url),
        }
    }
}

/// Opens the store of `backend`; must be called inside a tokio runtime.
pub async fn open_store(backend: &StoreBackend) -> Result<Arc<dyn Store>, OpenStoreError> {
    let store: Arc<dyn Store> = match backend {
        StoreBackend::Sled(options) => Arc::new(SledStore::open(options)?),
        StoreBackend::Postgres(options) => Arc::new(PostgresStore::open(options).await?),
    };
    Ok(store)
}
