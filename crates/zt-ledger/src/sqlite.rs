//! The embedded default store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Each [`AuditStore::append`] is one transaction, and SQLite syncs the write-ahead log before
//! the commit returns, so a batch is durable when `append` returns. After a crash SQLite
//! replays only WAL frames whose checksums and commit markers are intact: a torn tail write is
//! detected and dropped, and what it drops was never committed, so never acknowledged.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use zt_contract::{Digest32, Jwk};

use crate::store::{AuditStore, Head, SealedRecord, StoreError};

mod wal;
use wal::WalKeeper;

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "audit.db";

/// Most hashes [`AuditStore::hashes`] allocates room for up front.
const HASH_PAGE_HINT: usize = 1 << 16;

/// How long the writer and the checkpointer wait for each other's locks.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite-backed audit store.
///
/// SQLite never checkpoints inside a commit (`wal_autocheckpoint = 0`): that would stall every
/// decision waiting on the commit. A background thread copies the WAL into the database file
/// beside the writer, and the writer finishes the copy between commits once the WAL is long,
/// so the WAL starts over without anyone waiting for a lock ([`wal`]).
pub struct SqliteStore {
    conn: Connection,
    /// The writer's checkpointing; absent on a read-only store.
    wal: Option<WalKeeper>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// The database path for a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE_NAME)
    }

    /// Opens (creating if needed) the store for writing. The database, its `-wal` and its
    /// `-shm` are made mode 0600 (see [`make_private`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_writer(path, WalKeeper::start)
    }

    fn open_writer(
        path: &Path,
        wal_keeper: fn(&Path) -> Result<WalKeeper, StoreError>,
    ) -> Result<Self, StoreError> {
        make_private(path)?;
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS records (
                 seq INTEGER PRIMARY KEY,
                 current_hash TEXT NOT NULL,
                 line TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS signing_keys (
                 key_id TEXT PRIMARY KEY,
                 jwk TEXT NOT NULL,
                 published_order INTEGER NOT NULL
             );",
        )
        .map_err(backend)?;
        Ok(Self {
            conn,
            wal: Some(wal_keeper(path)?),
        })
    }

    /// Opens an existing store for reading only (safe beside a running writer).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Backend(format!(
                "no audit database at `{}`",
                path.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
        Ok(Self { conn, wal: None })
    }
}

/// Creates the database file mode 0600 if it does not exist, and makes it and any `-wal` and
/// `-shm` beside it 0600 (an older version left them 0644). SQLite would create the database
/// with the process umask, but it gives the `-wal` and `-shm` files it creates the database
/// file's mode, so a private database keeps its companions private too.
fn make_private(path: &Path) -> Result<(), StoreError> {
    let io = |p: &Path, e: std::io::Error| {
        StoreError::Backend(format!("audit database `{}`: {e}", p.display()))
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file, e)),
        }
    }
    Ok(())
}

/// Decodes a stored `current_hash`: exactly 64 lowercase hex digits, as
/// [`Digest32::from_hex`] accepts, but without a branch per digit, which matters when every
/// hash of the log is read (a tenth of a second per million hashes saved at each start).
fn decode_hash(text: &[u8]) -> Option<Digest32> {
    if text.len() != 64 {
        return None;
    }
    let nibble = |c: &u8| HEX_DIGITS.get(usize::from(*c)).copied().unwrap_or(NOT_HEX);
    let mut out = [0u8; 32];
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = match pair {
            [high, low] => (nibble(high), nibble(low)),
            _ => (NOT_HEX, NOT_HEX),
        };
        seen |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    // Any character that is not a lowercase hex digit set the high bits of `seen`.
    (seen & 0xf0 == 0).then_some(Digest32(out))
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_DIGITS`].
const NOT_HEX: u8 = 0xff;

/// The value of each lowercase hex digit; [`NOT_HEX`] for every other byte.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds would fail the build"
)]
const HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0u8;
    while i < 16 {
        let digit = if i < 10 { b'0' + i } else { b'a' + i - 10 };
        table[digit as usize] = i;
        i += 1;
    }
    table
};

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("sequence number {n} out of range")))
}

impl AuditStore for SqliteStore {
    fn head(&mut self) -> Result<Option<Head>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, current_hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some((seq, hash)) => {
                let seq = u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("negative seq {seq}")))?;
                let current_hash = Digest32::from_hex(&hash).ok_or_else(|| {
                    StoreError::Corrupt(format!("record {seq} has hash `{hash}`"))
                })?;
                Ok(Some(Head { seq, current_hash }))
            }
        }
    }

    fn append(&mut self, records: &[SealedRecord]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO records (seq, current_hash, line) VALUES (?1, ?2, ?3)")
                .map_err(backend)?;
            for r in records {
                stmt.execute(params![
                    to_i64(r.body.seq)?,
                    r.current_hash.to_hex(),
                    &*r.line
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn between_commits(&mut self) -> bool {
        self.wal
            .as_ref()
            .is_some_and(|wal| wal.between_commits(&self.conn))
    }

    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT line FROM records WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
            .map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![to_i64(from)?, limit], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError> {
        // `seq` is the rowid: this walks the table B-tree in order from `from` and decodes only
        // the first two columns of each row, never the line.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, current_hash FROM records WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(backend)?;
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query(params![to_i64(from)?, limit_sql])
            .map_err(backend)?;
        let mut out = Vec::with_capacity(limit.min(HASH_PAGE_HINT));
        let mut expected = from;
        while let Some(row) = rows.next().map_err(backend)? {
            let seq: i64 = row.get(0).map_err(backend)?;
            if u64::try_from(seq).ok() != Some(expected) {
                return Err(StoreError::Corrupt(format!(
                    "record {expected} is missing (found seq {seq})"
                )));
            }
            let text = row.get_ref(1).map_err(backend)?.as_bytes().map_err(|e| {
                StoreError::Corrupt(format!("record {seq} has a hash that is not text: {e}"))
            })?;
            let hash = decode_hash(text).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "record {seq} has hash `{}`",
                    String::from_utf8_lossy(text)
                ))
            })?;
            out.push(hash);
            expected += 1;
        }
        Ok(out)
    }

    fn publish_key(&mut self, jwk: &Jwk) -> Result<(), StoreError> {
        let text = serde_json::to_string(jwk).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO signing_keys (key_id, jwk, published_order)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(published_order), 0) + 1 FROM signing_keys))",
                params![jwk.kid, text],
            )
            .map_err(backend)?;
        let stored: String = self
            .conn
            .query_row(
                "SELECT jwk FROM signing_keys WHERE key_id = ?1",
                params![jwk.kid],
                |r| r.get(0),
            )
            .map_err(backend)?;
        crate::store::confirm_published(&stored, jwk)
    }

    fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT jwk FROM signing_keys ORDER BY published_order")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        let mut keys = Vec::new();
        for text in rows {
            let text = text.map_err(backend)?;
            let jwk = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("published key: {e}")))?;
            keys.push(jwk);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_hash, SqliteStore};
    use std::os::unix::fs::PermissionsExt;
    use zt_contract::Digest32;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_and_its_wal_and_shm_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let store = SqliteStore::open(&db).unwrap();
        for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
        drop(store);

        // Files an older version left world-readable are made private on the next open.
        for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
            let path = dir.path().join(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = SqliteStore::open(&db).unwrap();
        for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
    }

    #[test]
    fn decode_hash_accepts_exactly_what_from_hex_accepts() {
        let hash = Digest32::sha256(b"x");
        let hex = hash.to_hex();
        assert_eq!(decode_hash(hex.as_bytes()), Some(hash));
        let mut cases = vec![
            String::new(),
            hex[..62].to_string(),
            format!("{hex}0"),
            hex.to_uppercase(),
            format!("g{}", &hex[1..]),
            format!("{}\u{e9}", &hex[..62]),
        ];
        for i in 0..64 {
            for c in ['/', ':', '@', 'G', '`', 'g', ' '] {
                let mut bad = hex.clone().into_bytes();
                bad[i] = c as u8;
                cases.push(String::from_utf8(bad).unwrap());
            }
        }
        for case in cases {
            assert_eq!(
                decode_hash(case.as_bytes()),
                Digest32::from_hex(&case),
                "{case:?}"
            );
        }
        for b in 0..=255u8 {
            let text = [b; 64];
            let as_str = String::from_utf8_lossy(&text);
            assert_eq!(decode_hash(&text), Digest32::from_hex(&as_str), "{b}");
        }
    }
}
