//! Per-actor rate limits: a GCRA token bucket per authenticated actor (`governor`), so one
//! agent cannot starve the others or flood the audit log.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A rate: `per_second` sustained, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained decisions per second per actor.
    pub per_second: NonZeroU32,
    /// Decisions an idle actor may make at once.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// Parses `RATE` or `RATE/s` (decisions per second).
    pub fn parse_rate(text: &str) -> Result<NonZeroU32, String> {
        let number = text.trim().trim_end_matches("/s");
        number.parse::<NonZeroU32>().map_err(|_| {
            format!("`{text}` is not a rate: expected a positive integer per second, e.g. `100/s`")
        })
    }
}

/// The `--rate-limit` setting: a rate, or `none` (no per-actor limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSetting {
    /// No per-actor limit.
    Off,
    /// Sustained decisions per second per actor.
    PerSecond(NonZeroU32),
}

impl RateSetting {
    /// Parses `none`, `RATE` or `RATE/s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(RateSetting::Off);
        }
        RateLimit::parse_rate(text)
            .map(RateSetting::PerSecond)
            .map_err(|e| format!("{e}, or `none`"))
    }
}

/// The per-actor limiter.
pub(crate) struct ActorLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ActorLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorLimiter").finish_non_exhaustive()
    }
}

impl ActorLimiter {
    /// A limiter enforcing `limit` for every actor.
    pub(crate) fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// [`Self::check`] as the API answers it: 429 with the whole seconds to wait, rounded up.
    pub(crate) fn admit(&self, actor: &str) -> Result<(), crate::error::ApiError> {
        self.check(actor)
            .map_err(|wait| crate::error::ApiError::RateLimited(wait.as_secs() + 1))
    }

    /// `Ok` if `actor` may make one more decision now; otherwise how long until it may.
    pub(crate) fn check(&self, actor: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&actor.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets actors that have been idle long enough to have a full bucket again.
    pub(crate) fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn bursts_then_refuses_per_actor() {
        let limiter = ActorLimiter::new(RateLimit {
            per_second: nz(1),
            burst: nz(3),
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok(), "actors have their own buckets");
    }

    #[test]
    fn parses_rates() {
        assert_eq!(RateLimit::parse_rate("100/s").unwrap(), nz(100));
        assert_eq!(RateLimit::parse_rate("7").unwrap(), nz(7));
        assert!(RateLimit::parse_rate("0").is_err());
        assert!(RateLimit::parse_rate("fast").is_err());
    }

    #[test]
    fn none_turns_the_rate_limit_off() {
        assert_eq!(RateSetting::parse("none").unwrap(), RateSetting::Off);
        assert_eq!(RateSetting::parse("NONE").unwrap(), RateSetting::Off);
        assert_eq!(
            RateSetting::parse("50/s").unwrap(),
            RateSetting::PerSecond(nz(50))
        );
        assert!(RateSetting::parse("0").is_err());
        assert!(RateSetting::parse("off").is_err());
    }
}
