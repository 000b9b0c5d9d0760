//! The latency figures `zt bench` reports, and the closed loop's correction for coordinated
//! omission.
//!
//! A closed loop sends a connection's next request only when the previous answer arrives, so
//! a server that stalls for 50 ms is charged one slow sample per connection, although a
//! client on any schedule would have waited on every request it meant to send meanwhile. As
//! HdrHistogram (`recordValueWithExpectedInterval`) and wrk do, each answer slower than twice
//! the expected interval between a connection's requests is followed by the samples that
//! interval would have produced: `value - interval`, `value - 2 * interval`, … down to the
//! interval. The expected interval is the run's own: its duration times the connections over
//! the answers (wrk's `runtime / (complete / connections)`). Without this the closed loop
//! reports an unloaded client's figures and disagrees with wrk's tail.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Microseconds from 1 µs to 60 s, three significant digits.
pub(super) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// The closed loop's figures corrected for coordinated omission, and the expected interval
/// (µs) used; `None` when there is nothing to correct (no answers).
pub(super) fn corrected(
    answered: &Histogram<u64>,
    connections: usize,
    measured_us: u64,
) -> anyhow::Result<Option<(Histogram<u64>, u64)>> {
    if answered.is_empty() {
        return Ok(None);
    }
    let per_connection = (answered.len() / connections.max(1) as u64).max(1);
    let interval = measured_us / per_connection;
    let mut corrected = histogram()?;
    corrected.add_correct(answered, interval)?;
    Ok(Some((corrected, interval)))
}

/// `mean`, `p50`, `p90`, `p99`, `p999`, `max`, in milliseconds.
pub(super) fn summary(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({"mean": h.mean() / 1000.0, "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
           "p999": ms(0.999), "max": h.max() as f64 / 1000.0})
}

/// One line of percentiles for the terminal.
pub(super) fn line(h: &Histogram<u64>) -> String {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 connections answered in 1 ms for a second, then one 50 ms stall held all 32.
    fn with_one_stall() -> Histogram<u64> {
        let mut h = histogram().unwrap();
        h.record_n(1_000, 32 * 950).unwrap();
        h.record_n(50_000, 32).unwrap();
        h
    }

    #[test]
    fn a_stall_is_charged_for_the_requests_it_held_back() {
        let answered = with_one_stall();
        let (corrected, interval) = corrected(&answered, 32, 1_000_000).unwrap().unwrap();
        // 951 answers a connection in a second: one every 1,051 µs.
        assert_eq!(interval, 1_051);
        // Each slow answer brings the 46 its connection would have sent meanwhile
        // (48,949 µs, 47,898 µs, … down to the last one over 1,051 µs).
        assert_eq!(corrected.len(), answered.len() + 32 * 46);
        // Uncorrected, 32 slow answers of 30,432 are 0.1%: p99 sees none of the stall;
        // corrected, the 1,504 answers it held back are 4.7%, and p99 is well into it.
        assert_eq!(answered.value_at_quantile(0.99), 1_000);
        assert!(corrected.value_at_quantile(0.99) > 30_000);
        assert_eq!(corrected.max(), answered.max());
    }

    #[test]
    fn answers_within_twice_the_interval_are_left_alone() {
        let mut answered = histogram().unwrap();
        answered.record_n(1_000, 9_000).unwrap();
        answered.record_n(1_900, 1_000).unwrap();
        let (corrected, _) = corrected(&answered, 10, 1_000_000).unwrap().unwrap();
        assert_eq!(corrected.len(), answered.len());
        assert_eq!(
            corrected.value_at_quantile(0.99),
            answered.value_at_quantile(0.99)
        );
    }

    #[test]
    fn no_answers_nothing_to_correct() {
        assert!(corrected(&histogram().unwrap(), 32, 1_000_000)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_summary_is_in_milliseconds() {
        let s = summary(&with_one_stall());
        assert_eq!(s["p50"], 1.0);
        assert_eq!(s["max"].as_f64().map(|v| v.round()), Some(50.0));
        assert!(line(&with_one_stall()).starts_with("p50 1.00 ms"));
    }
}
