//! What the ledger checks and rebuilds before it commits anything: the tail of the stored chain
//! is re-verified (a store that lost or altered committed records must not be extended), and the
//! Merkle tree is rebuilt from the stored hashes.

use std::time::Instant;

use zt_contract::merkle::audit_leaf_hash;
use zt_contract::verify::SignaturePolicy;
use zt_contract::{ChainVerifier, Digest32, Jwk, Jwks, PublicKeySet, GENESIS_HASH};

use crate::store::{AuditStore, Head, StoreError};
use crate::tree::LogTree;

/// How many records at the tail of the log are re-verified at start.
const TAIL_CHECK: u64 = 1000;
/// Hashes read per store call when rebuilding the tree or catching up with other writers.
pub(crate) const HASH_PAGE: usize = 65_536;

/// Calls `each` with the stored hash of every record `0..size`, in order. Past one page, the
/// store is read on a second thread while `each` (hashing, for its callers) runs on this one,
/// which takes a third off a large log's scan.
fn for_each_hash(
    store: &mut dyn AuditStore,
    size: u64,
    mut each: impl FnMut(&Digest32),
) -> Result<(), StoreError> {
    let mut consume = |page: Vec<Digest32>| {
        page.iter().for_each(&mut each);
        true
    };
    if size <= HASH_PAGE as u64 {
        return read_pages(store, size, &mut consume);
    }
    std::thread::scope(|scope| {
        // Two pages in flight at most: about 4 MiB.
        let (pages, arriving) = std::sync::mpsc::sync_channel::<Vec<Digest32>>(2);
        let reader = std::thread::Builder::new()
            .name("zt-audit-hashes".into())
            .spawn_scoped(scope, move || {
                read_pages(store, size, &mut |page| pages.send(page).is_ok())
            })
            .map_err(|e| StoreError::Backend(format!("cannot start a hash reader: {e}")))?;
        for page in arriving {
            consume(page);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(StoreError::Backend("the hash reader panicked".into())))
    })
}

/// Reads the hashes of records `0..size` a page at a time and hands each page to `deliver`,
/// until it returns false. Fewer stored records than `size` is [`StoreError::Corrupt`].
fn read_pages(
    store: &mut dyn AuditStore,
    size: u64,
    deliver: &mut dyn FnMut(Vec<Digest32>) -> bool,
) -> Result<(), StoreError> {
    let mut next = 0u64;
    while next < size {
        let want = usize::try_from(size - next)
            .unwrap_or(usize::MAX)
            .min(HASH_PAGE);
        let mut page = store.hashes(next, want)?;
        if page.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "the log holds {next} records, not {size}"
            )));
        }
        page.truncate(want);
        next += page.len() as u64;
        if !deliver(page) {
            break;
        }
    }
    Ok(())
}

/// Rebuilds the Merkle tree of the stored log from its hashes (not its lines): one ordered
/// scan of the hash column, about two SHA-256 per record.
pub(crate) fn rebuild_tree(
    store: &mut dyn AuditStore,
    head: Option<Head>,
) -> Result<LogTree, StoreError> {
    let started = Instant::now();
    let size = head.map_or(0, |h| h.seq + 1);
    let mut tree = LogTree::new();
    let mut last = None;
    for_each_hash(store, size, |hash| {
        tree.append(audit_leaf_hash(hash));
        last = Some(*hash);
    })?;
    if last != head.map(|h| h.current_hash) {
        return Err(StoreError::Corrupt(
            "the stored hashes do not end at the head record".into(),
        ));
    }
    tracing::info!(
        records = size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "audit merkle tree rebuilt"
    );
    Ok(tree)
}

/// Re-verifies the last records at start: a store that lost or altered committed records
/// must not be extended, since every new record would vouch for it.
pub(crate) fn check_tail(
    store: &mut dyn AuditStore,
    head: Option<Head>,
    keys: &[Jwk],
) -> Result<(), StoreError> {
    let Some(head) = head else {
        return Ok(());
    };
    let from = head.seq.saturating_sub(TAIL_CHECK);
    let lines = store.read(from, usize::try_from(TAIL_CHECK + 1).unwrap_or(usize::MAX))?;
    let key_set = PublicKeySet::from_jwks(&Jwks {
        keys: keys.to_vec(),
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let first = lines
        .first()
        .ok_or_else(|| StoreError::Corrupt("head record unreadable".into()))?;
    let first: serde_json::Value =
        serde_json::from_str(first).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let previous = first
        .get("previous_hash")
        .and_then(|v| v.as_str())
        .unwrap_or(GENESIS_HASH);
    // The tree is built from the hash column, so the column must say what the lines say.
    let column = store.hashes(from, lines.len())?;
    let mut verifier = ChainVerifier::resume(SignaturePolicy::Require(&key_set), from, previous);
    for (i, line) in lines.iter().enumerate() {
        verifier
            .check_line(line)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if column.get(i).map(Digest32::to_hex).as_deref() != Some(verifier.head_hash()) {
            return Err(StoreError::Corrupt(format!(
                "the stored hash of record {} differs from its line",
                from + i as u64
            )));
        }
    }
    if verifier.head_hash() != head.current_hash.to_hex()
        || verifier.checked() != head.seq - from + 1
    {
        return Err(StoreError::Corrupt(
            "the head record does not close the chain".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SealedRecord;

    /// A store of `len` synthetic hashes (hash `i` is SHA-256 of `i`), failing on demand.
    struct Hashes {
        len: u64,
        fail_at: Option<u64>,
    }

    fn hash(i: u64) -> Digest32 {
        Digest32::sha256(&i.to_be_bytes())
    }

    impl AuditStore for Hashes {
        fn head(&mut self) -> Result<Option<Head>, StoreError> {
            Ok(self.len.checked_sub(1).map(|seq| Head {
                seq,
                current_hash: hash(seq),
            }))
        }
        fn append(&mut self, _: &[SealedRecord]) -> Result<(), StoreError> {
            Err(StoreError::Backend("read only".into()))
        }
        fn read(&mut self, _: u64, _: usize) -> Result<Vec<String>, StoreError> {
            Err(StoreError::Backend("no lines".into()))
        }
        fn hashes(&mut self, from: u64, limit: usize) -> Result<Vec<Digest32>, StoreError> {
            let end = self.len.min(from.saturating_add(limit as u64));
            if self.fail_at.is_some_and(|f| (from..end).contains(&f)) {
                return Err(StoreError::Backend("disk on fire".into()));
            }
            Ok((from..end).map(hash).collect())
        }
        fn publish_key(&mut self, _: &Jwk) -> Result<(), StoreError> {
            Ok(())
        }
        fn keys(&mut self) -> Result<Vec<Jwk>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn collect(store: &mut Hashes, size: u64) -> Result<Vec<Digest32>, StoreError> {
        let mut seen = Vec::new();
        for_each_hash(store, size, |h| seen.push(*h))?;
        Ok(seen)
    }

    #[test]
    fn hashes_arrive_in_order_across_pages_and_threads() {
        // Sizes around the page size take both paths: inline and with a reader thread.
        let page = HASH_PAGE as u64;
        for size in [0, 1, page - 1, page, page + 1, 3 * page + 7] {
            let mut store = Hashes {
                len: 3 * page + 7,
                fail_at: None,
            };
            let seen = collect(&mut store, size).unwrap();
            assert_eq!(seen.len() as u64, size);
            assert!(seen.iter().zip(0..).all(|(h, i)| *h == hash(i)), "{size}");
        }
        let mut store = Hashes {
            len: 2 * page + 3,
            fail_at: None,
        };
        let tree = rebuild_tree(
            &mut store,
            Some(Head {
                seq: 2 * page + 2,
                current_hash: hash(2 * page + 2),
            }),
        )
        .unwrap();
        let leaves: Vec<_> = (0..2 * page + 3)
            .map(|i| audit_leaf_hash(&hash(i)))
            .collect();
        assert_eq!(tree.root(), zt_contract::merkle::root(&leaves));
    }

    #[test]
    fn a_short_or_failing_store_is_an_error_on_either_path() {
        let page = HASH_PAGE as u64;
        for (len, size) in [(10, 11), (2 * page, 2 * page + 1)] {
            let mut store = Hashes { len, fail_at: None };
            let err = collect(&mut store, size).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
        for (len, fail_at) in [(10, 3), (3 * page, 2 * page + 5)] {
            let mut store = Hashes {
                len,
                fail_at: Some(fail_at),
            };
            let err = collect(&mut store, len).unwrap_err();
            assert!(err.to_string().contains("disk on fire"), "{err}");
        }
        // The head must close the stored hashes.
        let mut store = Hashes {
            len: 5,
            fail_at: None,
        };
        let wrong = Head {
            seq: 4,
            current_hash: hash(99),
        };
        assert!(matches!(
            rebuild_tree(&mut store, Some(wrong)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
