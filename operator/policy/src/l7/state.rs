//! What a chain remembers between requests: its rate-limit buckets and the
//! tokens it has verified. The evaluator reads and writes it through
//! [`Context`](super::Context) and never owns it, so the agent keeps one per
//! chain (surviving a NodePolicy swap while the chain is unchanged) and
//! `meshguard check-request` passes a fresh one: the verdict of a first
//! request.

use std::time::Duration;

use super::{rate::RateLimits, verified::VerifiedTokens};

#[derive(Debug, Default)]
pub struct ChainState {
    pub limits: RateLimits,
    pub tokens: VerifiedTokens,
}

impl ChainState {
    /// Drops what no longer changes an answer: full rate-limit buckets and
    /// tokens past their lifetime. Memory stays bounded by the keys active
    /// within one burst window and [`CAPACITY`](super::verified::CAPACITY)
    /// tokens.
    pub fn forget_idle(&self, now: Duration) {
        self.limits.forget_idle(now);
        self.tokens.forget_expired(now);
    }
}
