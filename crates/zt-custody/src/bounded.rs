//! Calls that may block forever, made to answer within a deadline.
//!
//! A PKCS#11 module is a C library: a network HSM that stops answering can leave `C_Sign` (or
//! `C_Login`, `C_FindObjects`, ...) blocked with no timeout of its own, and a blocked thread
//! cannot be interrupted. So each call runs on a thread of its own, and the caller waits for its
//! answer on a channel until the deadline. A call that misses it is *abandoned*: the caller gets
//! [`Refused::TimedOut`] and drops its end of the channel, so whatever the call returns later
//! (a signature, a session, a connection) is dropped on the worker thread and never reaches a
//! later request. Every request has its own channel.
//!
//! A thread blocked in the module cannot be stopped either, so their number is bounded: while
//! [`Bounded::limit`] calls are outstanding (running or abandoned and not yet returned), a new
//! call is refused at once ([`Refused::Saturated`]) instead of piling up threads on a module that
//! does not answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Why a bounded call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The call did not return before the deadline; it was abandoned.
    #[error("no answer within {0:?}; the call was abandoned")]
    TimedOut(Duration),
    /// Too many earlier calls have not returned: this one was not started.
    #[error("{0} earlier calls have not returned; refused without calling")]
    Saturated(usize),
    /// The thread could not be started, or the call panicked.
    #[error("the call's thread failed: {0}")]
    Thread(String),
}

/// Runs calls on threads of their own with a deadline, at most `limit` outstanding at once.
#[derive(Debug, Clone)]
pub struct Bounded {
    outstanding: Arc<AtomicUsize>,
    limit: usize,
    name: &'static str,
}

/// Counts a call as outstanding from before its thread starts until it returns and its result
/// has been delivered or dropped.
struct Outstanding(Arc<AtomicUsize>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bounded {
    /// At most `limit` calls outstanding; `name` names the threads.
    pub fn new(name: &'static str, limit: usize) -> Self {
        Self {
            outstanding: Arc::new(AtomicUsize::new(0)),
            limit: limit.max(1),
            name,
        }
    }

    /// The most calls outstanding at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Calls running or abandoned that have not returned yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Runs `work` on a thread of its own and waits for its result until `until`. On
    /// [`Refused::TimedOut`] the call goes on, unobserved: its result is dropped when it
    /// returns.
    pub fn run<T, F>(&self, until: Instant, work: F) -> Result<T, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.start(work)?.wait(until)
    }

    /// Starts `work` on a thread of its own, unless [`Self::limit`] calls are outstanding
    /// (then `work` is dropped, not run).
    pub fn start<T, F>(&self, work: F) -> Result<Pending<T>, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.reserve(1)?.start(work)
    }

    /// Room for `n` calls, taken now, or [`Refused::Saturated`] if that would pass
    /// [`Self::limit`]: a caller that holds resources for its calls (sessions) reserves first,
    /// so a refusal never leaves it with a resource it would have to release on its own
    /// thread. Room not used is given back when the [`Slots`] are dropped.
    pub fn reserve(&self, n: usize) -> Result<Slots, Refused> {
        let mut now = self.outstanding.load(Ordering::SeqCst);
        loop {
            if now + n > self.limit {
                return Err(Refused::Saturated(now));
            }
            match self.outstanding.compare_exchange(
                now,
                now + n,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(current) => now = current,
            }
        }
        Ok(Slots {
            guards: (0..n)
                .map(|_| Outstanding(Arc::clone(&self.outstanding)))
                .collect(),
            name: self.name,
        })
    }
}

/// Room for calls reserved with [`Bounded::reserve`].
#[derive(Debug)]
pub struct Slots {
    guards: Vec<Outstanding>,
    name: &'static str,
}

impl std::fmt::Debug for Outstanding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outstanding")
    }
}

impl Slots {
    /// Starts `work` on a thread of its own in one of the reserved places.
    pub fn start<T, F>(&mut self, work: F) -> Result<Pending<T>, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let guard = self
            .guards
            .pop()
            .ok_or_else(|| Refused::Thread("no reserved room left".into()))?;
        let (answer, wait) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(self.name.to_string())
            .spawn(move || {
                let guard = guard;
                let result = work();
                // Fails when the caller has given up: the result is dropped here, before the
                // call stops counting as outstanding.
                drop(answer.send(result));
                drop(guard);
            })
            .map_err(|e| Refused::Thread(e.to_string()))?;
        Ok(Pending { wait })
    }
}

/// A call started by [`Bounded::start`].
#[derive(Debug)]
pub struct Pending<T> {
    wait: mpsc::Receiver<T>,
}

impl<T> Pending<T> {
    /// Its result, if it comes by `until`; otherwise the call is abandoned and its result will
    /// be dropped when it returns.
    pub fn wait(self, until: Instant) -> Result<T, Refused> {
        let left = until.saturating_duration_since(Instant::now());
        match self.wait.recv_timeout(left) {
            Ok(result) => Ok(result),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Refused::TimedOut(left)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Refused::Thread("the call panicked".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A result that says when it is dropped.
    struct Answer {
        value: u32,
        dropped: Arc<AtomicBool>,
    }

    impl Drop for Answer {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    const BOUND: Duration = Duration::from_millis(200);

    /// A call that blocks until `release` is sent to (or dropped), then answers `value`.
    fn hanging(
        value: u32,
        dropped: &Arc<AtomicBool>,
    ) -> (mpsc::Sender<()>, impl FnOnce() -> Answer + Send + 'static) {
        let (release, hold) = mpsc::channel::<()>();
        let dropped = Arc::clone(dropped);
        (release, move || {
            let _ = hold.recv();
            Answer { value, dropped }
        })
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_hung_call_times_out_within_the_bound_and_its_late_result_is_dropped() {
        let bounded = Bounded::new("test-call", 4);
        let stale = Arc::new(AtomicBool::new(false));
        let (release, work) = hanging(1, &stale);
        let started = Instant::now();
        let refused = bounded.run(started + BOUND, work).map(|a| a.value);
        let took = started.elapsed();
        assert!(matches!(refused, Err(Refused::TimedOut(_))), "{refused:?}");
        assert!(took >= BOUND, "refused before the deadline: {took:?}");
        assert!(
            took < BOUND * 5,
            "refused long after the deadline: {took:?}"
        );
        assert_eq!(
            bounded.outstanding(),
            1,
            "the abandoned call is still running"
        );

        // A later call gets its own answer, not the abandoned one's.
        let fresh = Arc::new(AtomicBool::new(false));
        let fresh_flag = Arc::clone(&fresh);
        let later = bounded.run(Instant::now() + BOUND, move || Answer {
            value: 2,
            dropped: fresh_flag,
        });
        assert_eq!(later.as_ref().map(|a| a.value).ok(), Some(2));
        assert!(!stale.load(Ordering::SeqCst));

        // When the hung call returns, its answer goes nowhere: it is dropped.
        drop(release);
        wait_until("the abandoned result was not dropped", || {
            stale.load(Ordering::SeqCst)
        });
        wait_until("the abandoned call still counts", || {
            bounded.outstanding() == 0
        });
        let again = bounded.run(Instant::now() + BOUND, || 3);
        assert_eq!(again, Ok(3));
        drop(later);
        assert!(fresh.load(Ordering::SeqCst));
    }

    #[test]
    fn hung_calls_are_bounded_then_refused_at_once_until_they_return() {
        let bounded = Bounded::new("test-call", 2);
        let dropped = Arc::new(AtomicBool::new(false));
        let mut releases = Vec::new();
        for _ in 0..2 {
            let (release, work) = hanging(0, &dropped);
            releases.push(release);
            let refused = bounded.run(Instant::now() + BOUND, work).map(|a| a.value);
            assert!(matches!(refused, Err(Refused::TimedOut(_))), "{refused:?}");
        }
        assert_eq!(bounded.outstanding(), 2);

        // No third thread: refused without waiting for the deadline, and without running.
        let ran = Arc::new(AtomicBool::new(false));
        let ran_flag = Arc::clone(&ran);
        let started = Instant::now();
        let refused = bounded.run(started + Duration::from_secs(30), move || {
            ran_flag.store(true, Ordering::SeqCst);
        });
        assert_eq!(refused, Err(Refused::Saturated(2)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(bounded.outstanding(), 2, "a refused call does not count");

        drop(releases);
        wait_until("the hung calls still count", || bounded.outstanding() == 0);
        assert_eq!(bounded.run(Instant::now() + BOUND, || 7), Ok(7));
    }

    #[test]
    fn room_is_reserved_for_a_whole_batch_or_not_at_all() {
        let bounded = Bounded::new("test-call", 4);
        let mut slots = bounded.reserve(3).unwrap();
        assert_eq!(bounded.outstanding(), 3);
        // Only one place is left: a batch of two is refused whole.
        assert_eq!(bounded.reserve(2).err(), Some(Refused::Saturated(3)));
        assert_eq!(
            slots.start(|| 5).unwrap().wait(Instant::now() + BOUND),
            Ok(5)
        );
        wait_until("a returned call still counts", || {
            bounded.outstanding() == 2
        });
        // The two places not used are given back.
        drop(slots);
        assert_eq!(bounded.outstanding(), 0);
        assert!(bounded.reserve(4).is_ok());
    }

    #[test]
    fn a_call_that_panics_is_an_error_not_a_hang() {
        let bounded = Bounded::new("test-call", 1);
        let refused = bounded.run(Instant::now() + Duration::from_secs(30), || -> u32 {
            panic!("the module crashed")
        });
        assert!(matches!(refused, Err(Refused::Thread(_))), "{refused:?}");
        wait_until("a panicked call still counts", || {
            bounded.outstanding() == 0
        });
    }
}
