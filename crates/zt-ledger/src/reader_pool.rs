//! The stores that serve reads beside the writer (`GET /audit/records`, `/audit/keys`, proofs,
//! the record stream, receipts): at most [`MAX_READERS`] open at once, kept for reuse. A read
//! past the cap waits for a reader to come back, at most [`READER_WAIT`]. Unbounded, a burst
//! of public reads opened one reader each and kept them all: on PostgreSQL a connection and a
//! thread apiece, until the database refused connections to the writer and to other replicas.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::committer::ReaderFactory;
use crate::store::{AuditStore, StoreError};

/// Most readers open at once.
pub(crate) const MAX_READERS: usize = 8;

/// Longest a read waits for a reader before it is refused as busy.
pub(crate) const READER_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct ReaderPool {
    state: Mutex<PoolState>,
    returned: Condvar,
    open_reader: ReaderFactory,
    max: usize,
}

struct PoolState {
    idle: Vec<Box<dyn AuditStore>>,
    /// Readers open, idle or lent out (and being opened).
    open: usize,
}

/// A place among the pool's `open` readers, taken before its reader opens: given back when
/// dropped (the reader failed to open, or is closed), so that no place is ever lost.
struct Place<'p> {
    pool: &'p ReaderPool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// A reader lent out, with its place: closed when dropped, unless given back.
struct Lease<'p> {
    reader: Box<dyn AuditStore>,
    place: Place<'p>,
}

impl Lease<'_> {
    /// Puts the reader back for reuse; it keeps its place.
    fn give_back(self) {
        let Lease { reader, place } = self;
        let pool = place.pool;
        // The place stays taken: the idle reader holds it.
        std::mem::forget(place);
        pool.lock().idle.push(reader);
        pool.returned.notify_one();
    }
}

impl ReaderPool {
    pub(crate) fn new(open_reader: ReaderFactory, max: usize) -> Self {
        Self {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            open_reader,
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a pooled reader; a reader whose read failed is closed, not reused.
    /// Blocking: waits up to [`READER_WAIT`] while every reader is lent out.
    pub(crate) fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.lease()?;
        let out = read(lease.reader.as_mut());
        if out.is_ok() {
            lease.give_back();
        }
        out
    }

    fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + READER_WAIT;
        let mut state = self.lock();
        loop {
            if let Some(reader) = state.idle.pop() {
                return Ok(Lease {
                    reader,
                    place: Place { pool: self },
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                // Counted before it opens, so a failure to open gives its place back.
                let place = Place { pool: self };
                return Ok(Lease {
                    reader: (self.open_reader)()?,
                    place,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Backend(format!(
                    "all {} audit readers stayed busy for {} s",
                    self.max,
                    READER_WAIT.as_secs()
                )));
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Head, SealedRecord};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use zt_contract::{Digest32, Jwk};

    /// A store whose reads take 20 ms (or fail, for `failing`).
    struct Slow {
        failing: bool,
    }

    impl AuditStore for Slow {
        fn head(&mut self) -> Result<Option<Head>, StoreError> {
            Ok(None)
        }
        fn append(&mut self, _: &[SealedRecord]) -> Result<(), StoreError> {
            Ok(())
        }
        fn read(&mut self, _: u64, _: usize) -> Result<Vec<String>, StoreError> {
            std::thread::sleep(Duration::from_millis(20));
            if self.failing {
                return Err(StoreError::Backend("broken".into()));
            }
            Ok(Vec::new())
        }
        fn hashes(&mut self, _: u64, _: usize) -> Result<Vec<Digest32>, StoreError> {
            Ok(Vec::new())
        }
        fn publish_key(&mut self, _: &Jwk) -> Result<(), StoreError> {
            Ok(())
        }
        fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn pool(failing: bool) -> (Arc<ReaderPool>, Arc<AtomicUsize>) {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let factory: ReaderFactory = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Slow { failing }) as Box<dyn AuditStore>)
        });
        (Arc::new(ReaderPool::new(factory, 4)), opened)
    }

    #[test]
    fn a_burst_of_reads_opens_at_most_the_cap_and_reuses_them() {
        let (pool, opened) = pool(false);
        let readers: Vec<_> = (0..64)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || pool.with_reader(|r| r.read(0, 1)))
            })
            .collect();
        for reader in readers {
            assert!(reader.join().unwrap().is_ok());
        }
        assert_eq!(
            opened.load(Ordering::SeqCst),
            4,
            "opened once each, then reused"
        );
        assert_eq!(pool.open(), 4);
    }

    #[test]
    fn a_reader_that_cannot_open_gives_its_place_back() {
        let factory: ReaderFactory = Box::new(|| Err(StoreError::Backend("down".into())));
        let pool = ReaderPool::new(factory, 1);
        for _ in 0..3 {
            assert!(pool.with_reader(|r| r.read(0, 1)).is_err());
        }
        assert_eq!(pool.open(), 0);
    }

    #[test]
    fn a_reader_whose_read_failed_is_closed_and_its_place_given_back() {
        let (pool, opened) = pool(true);
        for _ in 0..10 {
            assert!(pool.with_reader(|r| r.read(0, 1)).is_err());
        }
        assert_eq!(pool.open(), 0);
        assert_eq!(opened.load(Ordering::SeqCst), 10);
    }
}
