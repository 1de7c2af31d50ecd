//! Tokens whose signature already verified, remembered until they expire,
//! so a client that sends the same token again costs a SHA-256 and a map
//! lookup instead of an RSA operation (RS256 was 34 of the 39 µs the
//! three-step chain took; docs/benchmarks.md). Envoy's `jwt_authn` keeps
//! such a cache for the same reason.
//!
//! What is remembered is only "this key set verified these bytes under this
//! algorithm", with the claims read from them. A hit still checks the
//! step's algorithms, issuer, audiences and lifetime against the time
//! passed in, and counts only while the very key set that verified the
//! token is the one the step holds now: a refetched JWKS is a new set, so a
//! key taken out of it verifies nothing more, remembered or not.
//!
//! State passed in through [`Context`](super::Context), like rate limits:
//! `meshguard check-request` starts from an empty memory and, since a hit
//! answers exactly what verification would, decides alike.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::KeySet;

/// Tokens remembered per chain at most. Only tokens that verified get in,
/// so a client cannot fill it with garbage; at the limit the expired ones
/// go first, then any one. 1,024 tokens of a few hundred bytes of claims
/// each stay under a megabyte per chain.
pub const CAPACITY: usize = 1024;

/// The SHA-256 of a token: what it is remembered by (a token is up to
/// 8 KiB; its digest is 32 bytes and no one can make two tokens share one).
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Default)]
pub struct VerifiedTokens {
    /// Keyed by the address of the key set that verified the token: the
    /// entry's `Weak` keeps that allocation from being freed and reused
    /// while the entry exists, so an address names one set only.
    entries: Mutex<HashMap<(usize, TokenDigest), Entry>>,
}

#[derive(Debug)]
struct Entry {
    keys: Weak<KeySet>,
    alg: Algorithm,
    claims: Map<String, Value>,
    /// Seconds since the UNIX epoch after which no step accepts the token
    /// (its `exp` plus the clock skew of the step that verified it).
    until: u64,
}

/// A remembered token: the algorithm it was verified under and its claims.
pub struct Remembered {
    pub alg: Algorithm,
    pub claims: Map<String, Value>,
}

impl VerifiedTokens {
    /// The token `digest` if `keys` verified it.
    pub fn get(&self, keys: &Arc<KeySet>, digest: &TokenDigest) -> Option<Remembered> {
        let entries = self.entries();
        let entry = entries.get(&(address(keys), *digest))?;
        // Always true while the entry pins the address (see `entries`);
        // checked anyway, as it is what a hit means.
        std::ptr::eq(entry.keys.as_ptr(), Arc::as_ptr(keys)).then(|| Remembered {
            alg: entry.alg,
            claims: entry.claims.clone(),
        })
    }

    /// Remembers that `keys` verified the token `digest` under `alg`.
    pub fn insert(
        &self,
        keys: &Arc<KeySet>,
        digest: TokenDigest,
        alg: Algorithm,
        claims: &Map<String, Value>,
        until: u64,
        now: Duration,
    ) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            let now = now.as_secs();
            entries.retain(|_, e| e.until > now && e.keys.strong_count() > 0);
            if entries.len() >= CAPACITY
                && let Some(any) = entries.keys().next().copied()
            {
                entries.remove(&any);
            }
        }
        entries.insert(
            (address(keys), digest),
            Entry {
                keys: Arc::downgrade(keys),
                alg,
                claims: claims.clone(),
                until,
            },
        );
    }

    /// Drops tokens no step accepts any more and those of key sets that are
    /// gone (a chain replaced, a JWKS refetched).
    pub fn forget_expired(&self, now: Duration) {
        let now = now.as_secs();
        self.entries()
            .retain(|_, e| e.until > now && e.keys.strong_count() > 0);
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The map; each update is one whole insert or removal, so a lock
    /// poisoned by a panic elsewhere still holds whole entries.
    fn entries(&self) -> MutexGuard<'_, HashMap<(usize, TokenDigest), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn address(keys: &Arc<KeySet>) -> usize {
    Arc::as_ptr(keys) as usize
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A one-key set (an Ed25519 public key: the smallest to write down).
    fn set() -> Arc<KeySet> {
        KeySet::parse(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .unwrap()
    }

    fn claims() -> Map<String, Value> {
        serde_json::json!({ "sub": "carol" })
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_token_is_remembered_for_the_set_that_verified_it_only() {
        let memory = VerifiedTokens::default();
        let (one, other) = (set(), set());
        let now = Duration::from_secs(100);
        memory.insert(&one, digest("t"), Algorithm::EdDSA, &claims(), 200, now);
        let hit = memory.get(&one, &digest("t")).unwrap();
        assert_eq!((hit.alg, hit.claims), (Algorithm::EdDSA, claims()));
        assert!(memory.get(&other, &digest("t")).is_none(), "another set");
        assert!(memory.get(&one, &digest("u")).is_none(), "another token");
    }

    #[test]
    fn expired_tokens_and_those_of_dropped_sets_are_forgotten() {
        let memory = VerifiedTokens::default();
        let (kept, dropped) = (set(), set());
        let now = Duration::from_secs(100);
        memory.insert(&kept, digest("old"), Algorithm::EdDSA, &claims(), 150, now);
        memory.insert(&kept, digest("new"), Algorithm::EdDSA, &claims(), 300, now);
        memory.insert(&dropped, digest("x"), Algorithm::EdDSA, &claims(), 300, now);
        drop(dropped);
        memory.forget_expired(Duration::from_secs(150));
        assert_eq!(memory.len(), 1);
        assert!(memory.get(&kept, &digest("new")).is_some());
    }

    #[test]
    fn the_memory_never_holds_more_than_its_capacity() {
        let memory = VerifiedTokens::default();
        let keys = set();
        let now = Duration::from_secs(100);
        for i in 0..CAPACITY + 10 {
            memory.insert(
                &keys,
                digest(&i.to_string()),
                Algorithm::EdDSA,
                &claims(),
                1_000,
                now,
            );
        }
        assert_eq!(memory.len(), CAPACITY);
        assert!(
            memory
                .get(&keys, &digest(&(CAPACITY + 9).to_string()))
                .is_some()
        );
    }
}
