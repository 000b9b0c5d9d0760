//! The publisher task: runs sessions one after another, backing off after each failure, and
//! logs only changes of state (connected, caught up, failing, stopped), never every record.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zt_ledger::Ledger;

use super::session::{self, stopping, Cursor, Tail};
use super::settings::NatsConfig;
use crate::metrics::Metrics;

/// The first pause after a failure; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A running publisher.
pub(crate) struct Publisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts publishing `ledger`'s committed records as `config` says, showing progress in
    /// `metrics`.
    pub(crate) fn spawn(ledger: Ledger, metrics: Arc<Metrics>, config: NatsConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(Tail { ledger, metrics }, config, stopped));
        Self { stop, task }
    }

    /// Asks the publisher to publish what is committed and stop, waits at most `grace`, then
    /// stops it where it is (the next start resumes from the stream). Drops its ledger handle.
    pub(crate) async fn finish(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
            tracing::warn!(
                "nats publisher stopped before publishing every record; the next start resumes"
            );
        }
    }
}

async fn run(tail: Tail, config: NatsConfig, mut stop: watch::Receiver<bool>) {
    let mut cursor = Cursor::default();
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let before = cursor.next;
        let ended = session::run(&tail, &config, &mut cursor, &mut stop).await;
        tail.metrics.nats_connected(false);
        let error = match ended {
            Ok(()) => {
                tracing::info!(
                    published = cursor.next.unwrap_or(0),
                    "nats publisher stopped"
                );
                return;
            }
            Err(e) => e.to_string(),
        };
        if cursor.next != before {
            failures = 0;
        }
        let pause = backoff(failures);
        failures = failures.saturating_add(1);
        if last_error.as_deref() == Some(error.as_str()) {
            tracing::debug!(error = %error, retry_in_ms = pause.as_millis(), "nats publisher still failing");
        } else {
            tracing::warn!(
                error = %error,
                retry_in_ms = pause.as_millis(),
                "nats publisher not publishing; decisions go on and records wait in the log"
            );
        }
        last_error = Some(error);
        if !pause_for(&tail, &cursor, &mut stop, pause).await {
            tracing::info!(
                published = cursor.next.unwrap_or(0),
                "nats publisher stopped while nats was unavailable; the next start resumes"
            );
            return;
        }
    }
}

/// The pause after `failures` failures in a row: doubling from [`FIRST_BACKOFF`], at most
/// [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_BACKOFF)
}

/// Waits `pause`, keeping the lag metric current; false if asked to stop meanwhile.
async fn pause_for(
    tail: &Tail,
    cursor: &Cursor,
    stop: &mut watch::Receiver<bool>,
    pause: Duration,
) -> bool {
    let until = tokio::time::Instant::now() + pause;
    loop {
        // Until a session has read the stream, nothing is known to be published.
        tail.metrics
            .nats_progress(cursor.next.unwrap_or(0), tail.ledger.tree_size());
        if stopping(stop) {
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        let step = (until - now).min(session::POLL * 2);
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stays_bounded() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(1), FIRST_BACKOFF * 2);
        assert_eq!(backoff(3), FIRST_BACKOFF * 8);
        assert_eq!(backoff(20), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
