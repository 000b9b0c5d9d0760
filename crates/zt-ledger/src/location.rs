//! Picks the audit store from the `--store` setting: the embedded SQLite database in the data
//! directory by default, or PostgreSQL for a `postgres://` URL.

use std::path::Path;

use crate::committer::ReaderFactory;
use crate::postgres::{PostgresLocation, PostgresStore};
use crate::sqlite::SqliteStore;
use crate::store::{AuditStore, StoreError};

/// Opens the writer store and a factory of readers for [`crate::Ledger::start`]: SQLite in
/// `data_dir` when `url` is `None`, else the PostgreSQL store `url` names (see
/// [`PostgresLocation::parse`]), which other servers may share.
pub fn open_store(
    url: Option<&str>,
    data_dir: &Path,
) -> Result<(Box<dyn AuditStore>, ReaderFactory), StoreError> {
    match url {
        None => {
            let db = SqliteStore::path_in(data_dir);
            let store = SqliteStore::open(&db)?;
            let readers: ReaderFactory = Box::new(move || {
                Ok(Box::new(SqliteStore::open_read_only(&db)?) as Box<dyn AuditStore>)
            });
            Ok((Box::new(store), readers))
        }
        Some(url) => {
            let location = PostgresLocation::parse(url)?;
            let store = PostgresStore::open(&location)?;
            tracing::info!(schema = location.schema(), "audit store: postgres");
            let readers: ReaderFactory = Box::new(move || {
                Ok(Box::new(PostgresStore::open_read_only(&location)?) as Box<dyn AuditStore>)
            });
            Ok((Box::new(store), readers))
        }
    }
}
