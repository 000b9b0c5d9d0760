//! Named, versioned text documents in a PostgreSQL store's schema, beside the audit tables:
//! what a server keeps there besides its log (its agent registry, active policy and policy
//! proposals), so that every server on the store shares them. One table,
//! `server_documents(name TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL)`,
//! created if missing under the same advisory lock the audit store creates its tables under,
//! so servers starting together cannot race.
//!
//! Writes are optimistic. A save is one statement: `INSERT ... ON CONFLICT DO NOTHING` for a
//! new document, else `UPDATE ... WHERE version = expected`; no row returned means another
//! writer won, and the caller reloads, re-applies its change and saves again.
//!
//! The session is the audit store's kind ([`PgSession`]): on its own thread, reopened after a
//! lost connection. Every method blocks for a round trip.

use std::collections::BTreeMap;

use crate::pg_session::{create_in_schema, store_error as backend, use_schema, PgSession};
use crate::postgres::PostgresLocation;
use crate::store::StoreError;

/// A document as stored: its text and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The text.
    pub body: String,
    /// Its version: 1 when created, one more on each save.
    pub version: u64,
}

/// The documents of one PostgreSQL schema.
pub struct PostgresDocuments {
    schema: String,
    session: PgSession,
}

impl std::fmt::Debug for PostgresDocuments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDocuments")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresDocuments {
    /// Connects, creating the schema and table if missing.
    pub fn open(location: &PostgresLocation) -> Result<Self, StoreError> {
        let schema = location.schema().to_string();
        let session_schema = schema.clone();
        let session = PgSession::open(location, move |client| {
            let schema = &session_schema;
            create_in_schema(
                client,
                schema,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.server_documents (
                         name TEXT PRIMARY KEY,
                         body TEXT NOT NULL,
                         version BIGINT NOT NULL
                     );"
                ),
            )?;
            use_schema(client, schema)
        })?;
        Ok(Self { schema, session })
    }

    /// The schema holding the table.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The document `name` and its version, if it exists.
    pub fn load(&self, name: &str) -> Result<Option<Doc>, StoreError> {
        let name = name.to_string();
        self.session.run(move |client| {
            let row = client
                .query_opt(
                    "SELECT body, version FROM server_documents WHERE name = $1",
                    &[&name],
                )
                .map_err(backend)?;
            row.map(|row| {
                let body: String = row.try_get(0).map_err(backend)?;
                let version: i64 = row.try_get(1).map_err(backend)?;
                Ok(Doc {
                    body,
                    version: to_version(version)?,
                })
            })
            .transpose()
        })
    }

    /// Replaces `name` with `body` if its version is still `expected` (`None`: the document
    /// must not exist yet) and returns the new version; `None` if another writer changed or
    /// created it first (nothing is written then).
    pub fn save(
        &self,
        name: &str,
        body: &str,
        expected: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let name = name.to_string();
        let body = body.to_string();
        let expected = expected.map(to_i64).transpose()?;
        let version = self.session.run(move |client| {
            let row = match expected {
                None => client.query_opt(
                    "INSERT INTO server_documents (name, body, version) VALUES ($1, $2, 1)
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                    &[&name, &body],
                ),
                Some(v) => client.query_opt(
                    "UPDATE server_documents SET body = $2, version = version + 1
                     WHERE name = $1 AND version = $3 RETURNING version",
                    &[&name, &body, &v],
                ),
            }
            .map_err(backend)?;
            row.map(|r| r.try_get::<_, i64>(0).map_err(backend))
                .transpose()
        })?;
        version.map(to_version).transpose()
    }

    /// The version of every document in the table, by name.
    pub fn versions(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.session.run(|client| {
            let rows = client
                .query("SELECT name, version FROM server_documents", &[])
                .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let name: String = row.try_get(0).map_err(backend)?;
                    let version: i64 = row.try_get(1).map_err(backend)?;
                    Ok((name, to_version(version)?))
                })
                .collect()
        })
    }
}

fn to_version(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative document version {v}")))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("document version {v} out of range")))
}
