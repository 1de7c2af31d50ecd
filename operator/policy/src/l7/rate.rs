//! Rate limits as GCRA (the generic cell rate algorithm): per bucket one
//! instant, the theoretical arrival time (TAT). A request is allowed when,
//! after it, the TAT lies at most `burst` emission intervals ahead of now.
//! Time is passed in, never read, so the agent and `check-request` decide
//! alike; a bucket whose TAT is past holds nothing an absent bucket would
//! not, so [`RateLimits::forget_idle`] drops it: memory stays bounded by the
//! keys active within one burst window.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use super::chain::RateLimit;

/// Buckets of one chain: (step index, key) -> TAT (since the UNIX epoch).
/// Shared by the requests of a chain: each take locks the map for one
/// lookup, never for a whole evaluation.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<(usize, String), Duration>>,
}

/// A refused request: how long until one would pass, and until the
/// bucket is full again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    pub full_in: Duration,
}

/// A passed request: what is left of the burst, and when all of it is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub remaining: u32,
    pub full_in: Duration,
}

impl RateLimits {
    /// Takes one request from the bucket, or says when one will fit.
    pub fn take(
        &self,
        step: usize,
        limit: &RateLimit,
        key: &str,
        now: Duration,
    ) -> Result<Budget, Limited> {
        let window = limit.emission * limit.burst;
        let mut buckets = self.buckets();
        let entry = buckets.entry((step, key.to_owned())).or_insert(now);
        let tat = (*entry).max(now) + limit.emission;
        if tat - now > window {
            return Err(Limited {
                retry_after: tat - now - window,
                full_in: (*entry).saturating_sub(now),
            });
        }
        *entry = tat;
        // Whole requests that still fit: the window left after this one,
        // in emission intervals.
        let left = window - (tat - now);
        let remaining = (left.as_nanos() / limit.emission.as_nanos().max(1)) as u32;
        Ok(Budget {
            remaining,
            full_in: tat - now,
        })
    }

    /// Drops every bucket that is full again (its TAT is not after `now`).
    pub fn forget_idle(&self, now: Duration) {
        self.buckets().retain(|_, tat| *tat > now);
    }

    pub fn len(&self) -> usize {
        self.buckets().len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets().is_empty()
    }

    /// The map; a panic elsewhere while it was held leaves whole entries
    /// only (each update is one assignment), so a poisoned lock is used as is.
    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, String), Duration>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::l7::chain::RateKey;

    fn limit(requests: u32, per: Duration, burst: u32) -> RateLimit {
        RateLimit {
            emission: per / requests,
            burst,
            requests,
            key: RateKey::Route,
            headers: false,
        }
    }

    #[test]
    fn a_burst_passes_then_one_request_per_interval() {
        let l = limit(10, Duration::from_secs(1), 3);
        let state = RateLimits::default();
        let t0 = Duration::from_secs(1_000);
        let ms = Duration::from_millis;
        for left in [2, 1, 0] {
            let budget = state.take(0, &l, "a", t0).unwrap();
            assert_eq!(budget.remaining, left);
            assert_eq!(budget.full_in, ms(100 * (3 - u64::from(left))));
        }
        let refused = state.take(0, &l, "a", t0).unwrap_err();
        assert_eq!(refused.retry_after, ms(100));
        assert_eq!(refused.full_in, ms(300));
        // Other keys and other steps have buckets of their own.
        assert!(state.take(0, &l, "b", t0).is_ok());
        assert!(state.take(1, &l, "a", t0).is_ok());
        // One interval later, exactly one more fits.
        let t1 = t0 + ms(100);
        assert_eq!(state.take(0, &l, "a", t1).unwrap().remaining, 0);
        assert!(state.take(0, &l, "a", t1).is_err());
    }

    #[test]
    fn a_sustained_rate_is_the_configured_one() {
        let l = limit(100, Duration::from_secs(1), 1);
        let state = RateLimits::default();
        let start = Duration::from_secs(5);
        // 1,000 attempts spread over one second: 100 pass.
        let passed = (0..1000)
            .filter(|i| {
                state
                    .take(0, &l, "k", start + Duration::from_millis(*i))
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 100);
    }

    #[test]
    fn idle_buckets_are_forgotten_and_start_full() {
        let l = limit(1, Duration::from_secs(1), 2);
        let state = RateLimits::default();
        let t0 = Duration::from_secs(10);
        state.take(0, &l, "a", t0).unwrap();
        state.take(0, &l, "b", t0).unwrap();
        state.take(0, &l, "b", t0).unwrap();
        state.forget_idle(t0 + Duration::from_millis(1500));
        assert_eq!(state.len(), 1, "a is full again, b is not");
        state.forget_idle(t0 + Duration::from_secs(2));
        assert!(state.is_empty());
        assert!(state.take(0, &l, "b", t0 + Duration::from_secs(2)).is_ok());
        assert!(state.take(0, &l, "b", t0 + Duration::from_secs(2)).is_ok());
    }
}
