//! Documents as files in the data directory (`agents.json`, `policy.cedar`,
//! `proposals.json`), replaced atomically. Only this server writes its data directory (it
//! holds the directory's lock), so versions are counted in memory: an existing file is
//! version 1 when first seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::{Doc, DocError, DocName};
use zt_ledger::persist::write_atomically;

/// Documents in one data directory.
pub(crate) struct FileDocs {
    dir: PathBuf,
    versions: Mutex<BTreeMap<DocName, u64>>,
}

impl std::fmt::Debug for FileDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDocs")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileDocs {
    /// The documents of `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The file holding `name`.
    pub(crate) fn path(&self, name: DocName) -> PathBuf {
        self.dir.join(name.file_name())
    }

    /// See [`super::Documents::load`].
    pub(crate) fn load(&self, name: DocName) -> Result<Option<Doc>, DocError> {
        let mut versions = self.lock();
        let path = self.path(name);
        let shown = || path.display().to_string();
        let body = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| DocError::NotText(shown()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DocError::Io(shown(), e)),
        };
        let version = *versions.entry(name).or_insert(1);
        Ok(Some(Doc { body, version }))
    }

    /// See [`super::Documents::save`].
    pub(crate) fn save(
        &self,
        name: DocName,
        body: &str,
        expected: Option<u64>,
    ) -> Result<u64, DocError> {
        let mut versions = self.lock();
        let path = self.path(name);
        let current = current_version(&mut versions, name, &path);
        if current != expected {
            return Err(DocError::Conflict(name.as_str()));
        }
        write_atomically(&path, body.as_bytes())
            .map_err(|e| DocError::Io(path.display().to_string(), e))?;
        let next = current.map_or(1, |v| v.saturating_add(1));
        versions.insert(name, next);
        Ok(next)
    }

    /// See [`super::Documents::versions`].
    pub(crate) fn versions(&self) -> Result<BTreeMap<DocName, u64>, DocError> {
        let mut versions = self.lock();
        Ok(DocName::ALL
            .into_iter()
            .filter_map(|name| {
                current_version(&mut versions, name, &self.path(name)).map(|v| (name, v))
            })
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<DocName, u64>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The version of `name`: as counted, else 1 if its file exists, else none.
fn current_version(
    versions: &mut BTreeMap<DocName, u64>,
    name: DocName,
    path: &Path,
) -> Option<u64> {
    match versions.get(&name) {
        Some(v) => Some(*v),
        None if path.exists() => {
            versions.insert(name, 1);
            Some(1)
        }
        None => None,
    }
}
