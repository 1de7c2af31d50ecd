//! Which remote key sets to fetch when, and which to keep: pure, the time
//! is passed in. The rules (the contract: a JWKS is never cached empty):
//!
//! - a set not yet held is fetched at once, then retried with a backoff
//!   (1 s, 2 s, 4 s, … up to the refetch interval) until one arrives;
//! - a held set is fetched again every refresh interval;
//! - a token whose `kid` the held set lacks asks for a fetch now, granted
//!   at most once per refetch interval (a flood of made-up `kid`s costs
//!   one fetch per interval, not one per request);
//! - a failed, empty or unreadable answer never replaces the set held: the
//!   last good one stays in use and the next try is backed off.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use meshguard_policy::l7::KeySet;

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How often a held set is fetched again.
    pub refresh: Duration,
    /// The least time between two fetches asked for by unknown `kid`s, and
    /// the longest backoff of a set not yet held.
    pub refetch: Duration,
}

#[derive(Debug)]
struct Entry {
    keys: Option<Arc<KeySet>>,
    /// When the next fetch is due.
    next: Instant,
    last_attempt: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    in_flight: bool,
    /// False once no chain names the URI; an entry whose fetch is still
    /// running is kept until it finishes, so that the URI wanted again
    /// meanwhile does not get a second fetch beside it.
    wanted: bool,
}

/// What a finished fetch did to the cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// The new set is in use.
    New { keys: usize },
    /// The fetch failed; the set held before (if any) stays in use.
    Previous { held: bool },
    /// The URI is no longer wanted (its chains went while it was fetched).
    Dropped,
}

#[derive(Debug)]
pub struct Cache {
    settings: Settings,
    entries: BTreeMap<String, Entry>,
}

impl Cache {
    pub fn new(settings: Settings) -> Cache {
        Cache {
            settings,
            entries: BTreeMap::new(),
        }
    }

    /// The URIs the current chains name: new ones are due at once, sets no
    /// chain names any more are forgotten. Returns whether any is new.
    pub fn want<'a>(&mut self, uris: impl IntoIterator<Item = &'a str>, now: Instant) -> bool {
        let wanted: std::collections::BTreeSet<&str> = uris.into_iter().collect();
        for (uri, entry) in &mut self.entries {
            entry.wanted = wanted.contains(uri.as_str());
        }
        self.entries.retain(|_, e| e.wanted || e.in_flight);
        let mut added = false;
        for uri in wanted {
            if !self.entries.contains_key(uri) {
                self.entries.insert(
                    uri.to_owned(),
                    Entry {
                        keys: None,
                        next: now,
                        last_attempt: None,
                        failures: 0,
                        in_flight: false,
                        wanted: true,
                    },
                );
                added = true;
            }
        }
        added
    }

    pub fn keys(&self, uri: &str) -> Option<Arc<KeySet>> {
        self.entries
            .get(uri)
            .filter(|e| e.wanted)
            .and_then(|e| e.keys.clone())
    }

    /// The URIs to fetch now, marked in flight until `finished`.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (uri, entry) in &mut self.entries {
            if entry.wanted && !entry.in_flight && entry.next <= now {
                entry.in_flight = true;
                entry.last_attempt = Some(now);
                due.push(uri.clone());
            }
        }
        due
    }

    /// When the next fetch falls due (None: nothing wanted or all in flight).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.next)
            .min()
    }

    /// A token's `kid` was not in the set of `uri`: brings its next fetch
    /// forward to now unless one started within the refetch interval.
    /// Returns whether it did.
    pub fn unknown_kid(&mut self, uri: &str, now: Instant) -> bool {
        let refetch = self.settings.refetch;
        let Some(entry) = self.entries.get_mut(uri) else {
            return false;
        };
        let recent = entry
            .last_attempt
            .is_some_and(|at| now.saturating_duration_since(at) < refetch);
        if entry.in_flight || recent || entry.next <= now {
            return false;
        }
        entry.next = now;
        true
    }

    /// Records a fetch's result: a set replaces the one held, a failure
    /// keeps it and backs off.
    pub fn finished(&mut self, uri: &str, result: Result<Arc<KeySet>, ()>, now: Instant) -> Kept {
        let settings = self.settings;
        let Some(entry) = self.entries.get_mut(uri) else {
            return Kept::Dropped;
        };
        entry.in_flight = false;
        if !entry.wanted {
            self.entries.remove(uri);
            return Kept::Dropped;
        }
        match result {
            Ok(keys) => {
                entry.failures = 0;
                entry.next = now + settings.refresh;
                let count = keys.len();
                entry.keys = Some(keys);
                Kept::New { keys: count }
            }
            Err(()) => {
                entry.failures = entry.failures.saturating_add(1);
                let backoff = Duration::from_secs(1)
                    .saturating_mul(1 << (entry.failures - 1).min(16))
                    .min(settings.refetch)
                    .min(settings.refresh);
                entry.next = now + backoff;
                Kept::Previous {
                    held: entry.keys.is_some(),
                }
            }
        }
    }

    /// URIs wanted, and how many of them have a set.
    pub fn counts(&self) -> (usize, usize) {
        let wanted = self.entries.values().filter(|e| e.wanted);
        let held = wanted.clone().filter(|e| e.keys.is_some()).count();
        (wanted.count(), held)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const URI: &str = "https://issuer.example/jwks.json";

    fn set(kid: &str) -> Arc<KeySet> {
        // A real P-256 public key (the x/y of RFC 7515 appendix A.3).
        KeySet::parse(&format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}",
                "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}"#
        ))
        .unwrap()
    }

    fn cache() -> Cache {
        Cache::new(Settings {
            refresh: Duration::from_secs(300),
            refetch: Duration::from_secs(30),
        })
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_uri_is_fetched_at_once_then_at_each_refresh() {
        let t0 = Instant::now();
        let mut c = cache();
        assert!(c.want([URI], t0));
        assert_eq!(c.due(t0), vec![URI.to_owned()]);
        assert!(c.due(t0).is_empty(), "in flight: not due twice");
        assert_eq!(c.finished(URI, Ok(set("a")), t0), Kept::New { keys: 1 });
        assert!(c.keys(URI).is_some());
        assert!(c.due(t0 + secs(299)).is_empty());
        assert_eq!(c.next_due(), Some(t0 + secs(300)));
        assert_eq!(c.due(t0 + secs(300)).len(), 1);
    }

    #[test]
    fn unknown_kids_cause_at_most_one_fetch_per_refetch_interval() {
        let t0 = Instant::now();
        let mut c = cache();
        c.want([URI], t0);
        c.due(t0);
        c.finished(URI, Ok(set("a")), t0);
        // Within 30 s of the last fetch: refused, however many tokens ask.
        for s in [1, 10, 29] {
            assert!(!c.unknown_kid(URI, t0 + secs(s)));
        }
        assert!(c.unknown_kid(URI, t0 + secs(30)));
        assert!(!c.unknown_kid(URI, t0 + secs(30)), "already due");
        assert_eq!(c.due(t0 + secs(30)).len(), 1);
        assert!(!c.unknown_kid(URI, t0 + secs(31)), "in flight");
        c.finished(URI, Ok(set("b")), t0 + secs(31));
        assert!(!c.unknown_kid(URI, t0 + secs(59)));
        assert!(c.unknown_kid(URI, t0 + secs(60)));
        // In 60 s of unknown kids: the first fetch and two refetches.
        assert!(!c.unknown_kid("https://other.example/", t0), "not wanted");
    }

    #[test]
    fn a_failure_keeps_the_last_good_set_and_backs_off() {
        let t0 = Instant::now();
        let mut c = cache();
        c.want([URI], t0);
        c.due(t0);
        c.finished(URI, Ok(set("good")), t0);
        let good = c.keys(URI).unwrap();
        c.due(t0 + secs(300));
        // An empty or unreadable JWKS reaches the cache as a failure (it
        // never parses into a KeySet), as does a timeout or a 500.
        assert_eq!(
            c.finished(URI, Err(()), t0 + secs(300)),
            Kept::Previous { held: true }
        );
        assert!(Arc::ptr_eq(&c.keys(URI).unwrap(), &good));
        assert_eq!(c.next_due(), Some(t0 + secs(301)));
        c.due(t0 + secs(301));
        c.finished(URI, Err(()), t0 + secs(301));
        assert_eq!(c.next_due(), Some(t0 + secs(303)), "backoff doubles");
        assert!(Arc::ptr_eq(&c.keys(URI).unwrap(), &good));
    }

    #[test]
    fn a_set_never_fetched_is_retried_with_a_backoff_capped_at_the_refetch_interval() {
        let t0 = Instant::now();
        let mut c = cache();
        c.want([URI], t0);
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(c.due(at).len(), 1);
            assert_eq!(c.finished(URI, Err(()), at), Kept::Previous { held: false });
            let next = c.next_due().unwrap();
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(c.keys(URI).is_none());
        c.due(at);
        c.finished(URI, Ok(set("late")), at);
        assert_eq!(c.next_due(), Some(at + secs(300)), "failures forgotten");
    }

    #[test]
    fn uris_no_chain_names_are_forgotten() {
        let t0 = Instant::now();
        let mut c = cache();
        c.want([URI, "https://b.example/"], t0);
        c.due(t0);
        c.finished(URI, Ok(set("a")), t0);
        assert_eq!(c.counts(), (2, 1));
        assert!(!c.want(["https://b.example/"], t0));
        assert_eq!(c.counts(), (1, 0));
        assert!(c.keys(URI).is_none());
        assert_eq!(c.finished(URI, Ok(set("a")), t0), Kept::Dropped);
    }

    #[test]
    fn a_uri_wanted_again_while_its_fetch_runs_gets_no_second_fetch() {
        let t0 = Instant::now();
        let mut c = cache();
        c.want([URI], t0);
        assert_eq!(c.due(t0), [URI]);
        // Its chains go, then come back, while the fetch still runs.
        c.want(None::<&str>, t0);
        assert_eq!(c.counts(), (0, 0));
        assert!(c.keys(URI).is_none());
        c.want([URI], t0 + secs(1));
        assert!(
            c.due(t0 + secs(1)).is_empty(),
            "a second fetch beside the first"
        );
        assert_eq!(
            c.finished(URI, Ok(set("a")), t0 + secs(2)),
            Kept::New { keys: 1 }
        );
        assert!(c.keys(URI).is_some());
        // Dropped while in flight and not wanted again: its answer is not kept.
        assert_eq!(c.due(t0 + secs(400)), [URI]);
        c.want(None::<&str>, t0 + secs(400));
        assert_eq!(c.finished(URI, Ok(set("a")), t0 + secs(401)), Kept::Dropped);
        assert_eq!(c.counts(), (0, 0));
        assert!(c.due(t0 + secs(1000)).is_empty());
    }
}
