//! Documents in the PostgreSQL audit store's schema: one table,
//! `server_documents(name TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL)`,
//! created if missing under the same advisory lock the audit store creates its tables under,
//! so replicas starting together cannot race.
//!
//! A save is one statement: `INSERT ... ON CONFLICT DO NOTHING` for a new document, else
//! `UPDATE ... WHERE version = expected`; no row returned means another writer won.
//!
//! The session is the audit store's kind ([`zt_ledger::pg_session::PgSession`]): on its own
//! thread, reopened after a lost connection.

use std::collections::BTreeMap;

use postgres::Client;
use zt_ledger::pg_session::{create_in_schema, store_error as backend, use_schema, PgSession};
use zt_ledger::{PostgresLocation, StoreError};

use super::{Doc, DocError, DocName};

/// Documents in one PostgreSQL schema.
pub struct PostgresDocs {
    schema: String,
    session: PgSession,
}

impl std::fmt::Debug for PostgresDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDocs")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresDocs {
    /// Connects, creating the schema and table if missing.
    pub fn open(location: &PostgresLocation) -> Result<Self, DocError> {
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

    /// See [`super::Documents::load`].
    pub fn load(&self, name: DocName) -> Result<Option<Doc>, DocError> {
        self.run(move |client| {
            let row = client
                .query_opt(
                    "SELECT body, version FROM server_documents WHERE name = $1",
                    &[&name.as_str()],
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

    /// See [`super::Documents::save`].
    pub fn save(&self, name: DocName, body: &str, expected: Option<u64>) -> Result<u64, DocError> {
        let body = body.to_string();
        let expected = expected.map(to_i64).transpose()?;
        let row = self.run(move |client| {
            let key = name.as_str();
            let row = match expected {
                None => client.query_opt(
                    "INSERT INTO server_documents (name, body, version) VALUES ($1, $2, 1)
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                    &[&key, &body],
                ),
                Some(v) => client.query_opt(
                    "UPDATE server_documents SET body = $2, version = version + 1
                     WHERE name = $1 AND version = $3 RETURNING version",
                    &[&key, &body, &v],
                ),
            }
            .map_err(backend)?;
            row.map(|r| r.try_get::<_, i64>(0).map_err(backend))
                .transpose()
        })?;
        match row {
            Some(version) => Ok(to_version(version)?),
            None => Err(DocError::Conflict(name.as_str())),
        }
    }

    /// See [`super::Documents::versions`].
    pub fn versions(&self) -> Result<BTreeMap<DocName, u64>, DocError> {
        let rows = self.run(|client| {
            let rows = client
                .query("SELECT name, version FROM server_documents", &[])
                .map_err(backend)?;
            rows.iter()
                .map(|row| {
                    let name: String = row.try_get(0).map_err(backend)?;
                    let version: i64 = row.try_get(1).map_err(backend)?;
                    Ok((name, version))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut out = BTreeMap::new();
        for (name, version) in rows {
            // Documents of other server versions are not this one's business.
            if let Some(doc) = DocName::ALL.into_iter().find(|d| d.as_str() == name) {
                out.insert(doc, to_version(version)?);
            }
        }
        Ok(out)
    }

    /// Runs `f` with the client on its thread and waits for the answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, DocError> {
        Ok(self.session.run(f)?)
    }
}

fn to_version(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative document version {v}")))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("document version {v} out of range")))
}
