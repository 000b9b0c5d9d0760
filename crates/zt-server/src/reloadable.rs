//! A setting read from a file and put in force again when the file changes, without a restart
//! (the admin token file, the JWT-SVID trust bundle). A file that is refused never replaces
//! what is in force: the error is kept for `/health` until a reload succeeds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// What identifies one version of a file: inode, size, modification time and, for a file of
/// up to [`DIGESTED_UP_TO`] bytes, the SHA-256 of its contents. The contents matter because
/// an edit in place that keeps the size, within the file system's timestamp granularity (or
/// by a tool that restores the time), changes nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileVersion {
    inode: u64,
    size: u64,
    modified_ns: i128,
    /// Mode and status-change time: a `chmod` that makes a refused file acceptable (a key no
    /// longer readable by others) is a change.
    mode: u32,
    changed_ns: i128,
    contents_sha256: Option<[u8; 32]>,
}

/// Files larger than this are told apart by their metadata alone (every file these settings
/// read is far smaller; reading one a second must stay cheap).
const DIGESTED_UP_TO: u64 = 4 * 1024 * 1024;

impl FileVersion {
    /// The version of the file at `path` now, or `None` if it cannot be read.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        use std::io::Read as _;
        let meta = std::fs::metadata(path).ok()?;
        // Only a regular file is opened: opening a FIFO would block the watcher until a
        // writer came, and a device could be read without end.
        let contents_sha256 = (meta.is_file() && meta.size() <= DIGESTED_UP_TO)
            .then(|| {
                let mut contents = Vec::new();
                std::fs::File::open(path)
                    .ok()?
                    .take(DIGESTED_UP_TO + 1)
                    .read_to_end(&mut contents)
                    .ok()?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &contents);
                <[u8; 32]>::try_from(digest.as_ref()).ok()
            })
            .flatten();
        Some(Self {
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            mode: meta.mode(),
            changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            contents_sha256,
        })
    }
}

fn versions(files: &[PathBuf]) -> Vec<Option<FileVersion>> {
    files.iter().map(|file| FileVersion::of(file)).collect()
}

/// `T` as last read from `path` (and the other files it depends on, if any).
pub(crate) struct Reloadable<T> {
    path: PathBuf,
    current: RwLock<Arc<T>>,
    /// Every file `T` is read from, `path` first.
    watched: Vec<PathBuf>,
    seen: Mutex<Vec<Option<FileVersion>>>,
    last_error: Mutex<Option<String>>,
}

// What is in force may be secret (tokens); only the file is shown.
impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T> Reloadable<T> {
    /// `value`, read from `path` at start.
    pub(crate) fn new(path: PathBuf, value: T) -> Self {
        Self::watching(path, Vec::new(), value)
    }

    /// `value`, read at start from `path` and the files `also`: a change to any of them is a
    /// change.
    pub(crate) fn watching(path: PathBuf, also: Vec<PathBuf>, value: T) -> Self {
        let watched: Vec<PathBuf> = std::iter::once(path.clone()).chain(also).collect();
        Self {
            seen: Mutex::new(versions(&watched)),
            watched,
            path,
            current: RwLock::new(Arc::new(value)),
            last_error: Mutex::new(None),
        }
    }

    /// What is in force.
    pub(crate) fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last reload was refused, if the last attempt failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the file changed since it was last read; marks it read.
    pub(crate) fn changed(&self) -> bool {
        let now = versions(&self.watched);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = *seen != now;
        *seen = now;
        changed
    }

    /// Reads the file with `load` and, if it is accepted, puts it in force: what was in force
    /// before and what is now. A refused file keeps what is in force; the error is kept.
    pub(crate) fn reload<E: std::fmt::Display>(
        &self,
        load: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<(Arc<T>, Arc<T>), String> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = versions(&self.watched);
        // Read before the error's lock is taken: `/health` reads it meanwhile.
        let loaded = load(&self.path);
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match loaded {
            Ok(value) => {
                let value = Arc::new(value);
                let before = std::mem::replace(
                    &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
                    value.clone(),
                );
                *last_error = None;
                Ok((before, value))
            }
            Err(e) => {
                let e = e.to_string();
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// A setting kept in a [`Reloadable`] file and put in force again by its own rules: what
/// every such setting answers the same way.
pub(crate) trait ReloadedSetting {
    /// What the file holds.
    type Value;

    /// The file and what is in force.
    fn file(&self) -> &Reloadable<Self::Value>;

    /// Reads the file again and, if it is accepted, puts it in force; logs what changed.
    fn reload(&self, trigger: &str);

    /// The file.
    fn path(&self) -> &Path {
        self.file().path()
    }

    /// Why the last reload was refused, if the last attempt failed.
    fn last_error(&self) -> Option<String> {
        self.file().last_error()
    }

    /// Reloads the file if it changed since it was last read.
    fn reload_if_changed(&self) {
        if self.file().changed() {
            self.reload("file change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        if text.contains("bad") {
            return Err(format!("refused: {text}"));
        }
        Ok(text)
    }

    #[test]
    fn a_change_is_seen_once_and_a_refused_file_keeps_what_is_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let file = Reloadable::new(path.clone(), read(&path).unwrap());
        assert!(!file.changed());
        std::fs::write(&path, "two!").unwrap();
        assert!(file.changed());
        assert!(!file.changed(), "seen once");
        let (before, now) = file.reload(read).unwrap();
        assert_eq!((before.as_str(), now.as_str()), ("one", "two!"));
        std::fs::write(&path, "bad").unwrap();
        assert!(file.reload(read).is_err());
        assert_eq!(file.current().as_str(), "two!");
        assert_eq!(file.last_error().as_deref(), Some("refused: bad"));
        std::fs::write(&path, "three").unwrap();
        file.reload(read).unwrap();
        assert_eq!(file.last_error(), None);
    }

    #[test]
    fn an_edit_that_keeps_the_size_and_the_time_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let file = Reloadable::new(path.clone(), read(&path).unwrap());
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        // The same size, in place, and the time put back as a coarse clock would leave it.
        std::fs::write(&path, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert!(file.changed());
        assert!(!file.changed(), "seen once");
    }
}
