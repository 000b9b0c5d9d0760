//! Keeping the write-ahead log short without ever holding the writer back.
//!
//! A background thread with its own connection copies the WAL into the database file
//! (`PASSIVE` checkpoints: beside the writer, never blocking it). Under steady load that copy
//! never quite finishes: the writer commits more while it runs, so SQLite cannot start the
//! WAL over and it grows without end. Once it is long, the background thread asks the writer
//! to copy the few frames committed since (its own `PASSIVE` checkpoint, between two commits,
//! after the first one's callers were answered, when no transaction can add to the WAL);
//! every frame is then in the database file, and SQLite's next write transaction starts the
//! WAL over from the beginning, rewriting the file in place. That needs no lock anyone waits
//! for: if a reader still reads an older snapshot, SQLite simply keeps appending, and the
//! writer is asked again later.
//!
//! What this replaced, measured: a `RESTART` checkpoint once the WAL passed 64 MiB took the
//! writer's lock and then waited for the writer and its readers through SQLite's busy
//! handler, whose sleeps grow 1, 2, 5, 10 ms...; each one held every decision in flight for
//! 15 to 55 ms, every 3 to 4 seconds under load (docs/PERFORMANCE.md).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::Connection;

use super::{backend, BUSY_TIMEOUT};
use crate::store::StoreError;

/// How soon the background thread copies again after a round that found new commits. The
/// writer's own copy (below) covers what was committed since the last round began, and syncs
/// the database file the pages it copies have just made longer; the shorter the round, the
/// less is left for the writer. At 100 ms the writer's copy took 1.5-2.3 ms, eight times a
/// second under load, and held the batch after it that long; at 10 ms it takes 0.7 ms, and
/// the decisions' p99 under `wrk -c32` fell from 3.4 to 2.2 ms (docs/PERFORMANCE.md, "The
/// background copy's round"). Each round syncs the database file, so an idle store waits
/// [`IDLE_ROUND`] instead.
const BUSY_ROUND: Duration = Duration::from_millis(10);

/// How soon the background thread looks again after a round that found nothing new: an idle
/// server does not wake a hundred times a second, and the first round under new load comes
/// at most this late, the round of earlier versions.
const IDLE_ROUND: Duration = Duration::from_millis(100);

/// The pause after a round, given the WAL's length in frames at the round before and now: a
/// length that moved means commits came (or the WAL started over), so the store is busy.
fn next_round_after(previous_frames: Option<i64>, frames: Option<i64>) -> Duration {
    if frames.is_some() && frames != previous_frames {
        BUSY_ROUND
    } else {
        IDLE_ROUND
    }
}

/// WAL frames (pages) past which the writer is asked to finish the copy so the WAL starts
/// over: about 4 MiB, a tenth of a second of commits under full load. The writer's copy costs
/// it under a millisecond with rounds of [`BUSY_ROUND`] (mostly syncing the database file);
/// asking it at 16 MiB or 64 MiB made each copy longer and p99 worse. Kept short: the WAL file keeps its largest
/// size and is then rewritten in place, so a commit's sync extends no file (the likely reason
/// why commits over 12.8 ms disappeared, where letting the WAL reach 64 MiB first left 1 to 3
/// a run).
const RESET_WAL_FRAMES: i64 = 1_024;

/// The background checkpointer and the request it leaves for the writer.
pub(super) struct WalKeeper {
    /// Set by the background thread when the WAL should start over; taken by the writer.
    reset_due: Arc<AtomicBool>,
    /// Dropping it stops the background thread.
    _stop: mpsc::Sender<()>,
}

impl WalKeeper {
    /// Starts the background checkpointer on its own connection to the database at `path`.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let reset_due = Arc::new(AtomicBool::new(false));
        let asks = reset_due.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("zt-audit-checkpoint".into())
            .spawn(move || {
                let mut pause = IDLE_ROUND;
                let mut previous_frames = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
                    let frames = match copy_committed(&conn) {
                        Ok(frames) => {
                            if frames > RESET_WAL_FRAMES {
                                asks.store(true, Ordering::Release);
                            }
                            Some(frames)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "audit WAL checkpoint failed; will retry");
                            None
                        }
                    };
                    pause = next_round_after(previous_frames, frames);
                    previous_frames = frames;
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start checkpointer: {e}")))?;
        Ok(Self {
            reset_due,
            _stop: stop,
        })
    }

    /// Called by the writer between commits, on the writer's connection: when the
    /// background thread asked, copies what it has not, so the next commit starts the WAL
    /// over. At most once per request, and never failing the commit before it: a copy that a
    /// reader or the background thread keeps from finishing is asked for again by the next
    /// background round that finds the WAL long. Returns whether it was asked (and so copied).
    pub(super) fn between_commits(&self, writer: &Connection) -> bool {
        if !self.reset_due.swap(false, Ordering::AcqRel) {
            return false;
        }
        if let Err(e) = copy_committed(writer) {
            tracing::warn!(error = %e, "audit WAL checkpoint between commits failed; will retry");
        }
        true
    }
}

/// One `PASSIVE` checkpoint, the background round's and the writer's alike: copies every
/// committed frame no reader still needs into the database file and syncs it, without
/// waiting for any lock. Returns the WAL's length in frames.
fn copy_committed(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

#[cfg(test)]
impl WalKeeper {
    /// A keeper with no background thread, so a test decides when the writer is asked.
    fn idle() -> Result<Self, StoreError> {
        Ok(Self {
            reset_due: Arc::new(AtomicBool::new(false)),
            _stop: mpsc::channel().0,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;

    use super::WalKeeper;
    use crate::sealer::seal_batch;
    use crate::sqlite::SqliteStore;
    use crate::store::{AuditStore, Head};
    use crate::{LocalKeySigner, RecordDraft};

    /// A store; unless `new_with_background`, its writer is asked only when the test says so.
    struct Fixture {
        dir: tempfile::TempDir,
        store: SqliteStore,
        signer: LocalKeySigner,
        head: Option<Head>,
    }

    impl Fixture {
        fn new() -> Self {
            Self::open(|_| WalKeeper::idle())
        }

        fn new_with_background() -> Self {
            Self::open(WalKeeper::start)
        }

        fn open(keeper: fn(&Path) -> Result<WalKeeper, crate::store::StoreError>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open_writer(&dir.path().join("audit.db"), keeper).unwrap();
            let signer = LocalKeySigner::load_or_create(dir.path()).unwrap();
            Self {
                dir,
                store,
                signer,
                head: None,
            }
        }

        /// Commits about 4 MB: ten batches of 100 records of 4 KB.
        fn commit_4mb(&mut self) {
            for _ in 0..10 {
                let drafts = (0..100)
                    .map(|_| RecordDraft {
                        resource: "x".repeat(4_000),
                        ..RecordDraft::default()
                    })
                    .collect();
                let batch = seal_batch(&mut self.head, drafts, &self.signer).unwrap();
                self.store.append(&batch).unwrap();
                self.store.between_commits();
            }
        }

        fn wal_bytes(&self) -> u64 {
            std::fs::metadata(self.dir.path().join("audit.db-wal"))
                .unwrap()
                .len()
        }

        fn ask_writer(&self) {
            let keeper = self.store.wal.as_ref().unwrap();
            keeper.reset_due.store(true, Ordering::Release);
        }

        fn asked(&self) -> bool {
            let keeper = self.store.wal.as_ref().unwrap();
            keeper.reset_due.load(Ordering::Acquire)
        }
    }

    fn records(path: &Path) -> usize {
        let mut reader = SqliteStore::open_read_only(path).unwrap();
        reader.read(0, 100_000).unwrap().len()
    }

    #[test]
    fn once_asked_the_writer_finishes_the_copy_and_the_wal_is_rewritten_in_place() {
        let mut f = Fixture::new();
        f.commit_4mb();
        let grown = f.wal_bytes();
        assert!(grown > 4_000_000, "WAL is {grown} bytes");

        f.ask_writer();
        f.commit_4mb();
        assert!(!f.asked(), "the writer took the request");
        let after = f.wal_bytes();
        assert!(
            after < grown + 500_000,
            "4 MB more were appended instead of rewriting the WAL from its start: {grown} then {after} bytes"
        );
        assert_eq!(records(&f.dir.path().join("audit.db")), 2_000);
    }

    #[test]
    fn the_background_thread_asks_the_writer_so_the_wal_stays_near_its_first_size() {
        let mut f = Fixture::new_with_background();
        for _ in 0..8 {
            f.commit_4mb();
            // Give background rounds (every 10 ms under load) the chance to find the WAL long; the
            // writer may already have taken the request inside `commit_4mb`.
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
            while !f.asked() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        // 32 MB committed; the WAL was rewritten in place from about 4 MB on.
        let wal = f.wal_bytes();
        assert!(wal < 14_000_000, "WAL is {wal} bytes");
        assert_eq!(records(&f.dir.path().join("audit.db")), 8_000);
    }

    #[test]
    fn rounds_come_quickly_while_commits_come_and_slowly_when_idle() {
        use super::{next_round_after, BUSY_ROUND, IDLE_ROUND};
        assert_eq!(next_round_after(Some(10), Some(250)), BUSY_ROUND);
        // The writer's copy let the WAL start over: shorter, but commits came.
        assert_eq!(next_round_after(Some(900), Some(12)), BUSY_ROUND);
        assert_eq!(next_round_after(None, Some(3)), BUSY_ROUND);
        assert_eq!(next_round_after(Some(250), Some(250)), IDLE_ROUND);
        // A failed round is retried, but not at the busy pace.
        assert_eq!(next_round_after(Some(250), None), IDLE_ROUND);
        assert!(BUSY_ROUND < IDLE_ROUND);
    }

    #[test]
    fn the_writer_copies_only_when_asked_and_says_so() {
        let mut f = Fixture::new();
        f.commit_4mb();
        assert!(!f.store.between_commits(), "not asked: nothing to do");
        f.ask_writer();
        assert!(f.store.between_commits(), "asked: it copied");
        assert!(!f.asked());
        assert!(!f.store.between_commits(), "the request is taken once");
    }

    #[test]
    fn unasked_the_wal_keeps_growing() {
        // The control for the test above: the same commits, nobody asks the writer.
        let mut f = Fixture::new();
        f.commit_4mb();
        let grown = f.wal_bytes();
        f.commit_4mb();
        assert!(f.wal_bytes() > grown + 3_500_000);
    }

    #[test]
    fn a_reader_on_an_older_snapshot_delays_the_restart_without_blocking_the_writer() {
        let mut f = Fixture::new();
        f.commit_4mb();
        let path = f.dir.path().join("audit.db");
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1_000);

        // The reader pins the WAL: the writer's copy cannot finish, so the WAL grows, and
        // every commit still goes through at once.
        let grown = f.wal_bytes();
        f.ask_writer();
        f.commit_4mb();
        assert!(!f.asked());
        assert!(f.wal_bytes() > grown + 3_500_000);

        // Once the reader has gone, the next request is met.
        reader.execute_batch("COMMIT").unwrap();
        let high = f.wal_bytes();
        f.ask_writer();
        f.commit_4mb();
        f.commit_4mb();
        assert!(
            f.wal_bytes() < high + 500_000,
            "rewritten in place once the reader left"
        );
        assert_eq!(records(&path), 4_000);
    }
}
