//! Key sets that `jwt` steps name by `uri`: fetched by the agent over
//! HTTPS, cached, and read by the evaluator through `RemoteKeys`.
//!
//! ```text
//!  chains::Current::replace ──want(uris)──▶ cache::Cache ◀──get── evaluator (per request)
//!  server (unknown kid) ─────unknown_kid──▶      │ due / finished
//!                                         run() ─┴─▶ fetch::Fetcher (timeout, size limit, parse)
//! ```
//!
//! Requests never wait for a fetch: a token checked against a set not yet
//! fetched is an internal error (500 with `failureMode: Closed`, the step
//! skipped with `Open`), and a token with a `kid` the set lacks is refused
//! 401 while the refetch it asked for runs.

pub mod cache;
pub mod fetch;

use std::{
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use meshguard_policy::l7::{KeySet, RemoteKeys};
use tokio::sync::Notify;

pub use cache::{Cache, Kept, Settings};
pub use fetch::{FetchError, Fetcher};

/// The cache shared by the server (reads, `kid` misses), the agent (URIs
/// wanted) and the fetch task.
#[derive(Clone)]
pub struct RemoteJwks {
    cache: Arc<RwLock<Cache>>,
    wake: Arc<Notify>,
}

impl RemoteKeys for RemoteJwks {
    fn get(&self, uri: &str) -> Option<Arc<KeySet>> {
        self.read().keys(uri)
    }
}

/// What one fetch did, for metrics and logs.
pub struct Fetched<'a> {
    pub uri: &'a str,
    pub result: Result<usize, &'a FetchError>,
    pub kept: &'a Kept,
    pub seconds: f64,
}

impl RemoteJwks {
    pub fn new(settings: Settings) -> RemoteJwks {
        RemoteJwks {
            cache: Arc::new(RwLock::new(Cache::new(settings))),
            wake: Arc::default(),
        }
    }

    // A poisoned lock means a panic between two whole updates of the
    // cache; what it holds is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The URIs the chains now served name; new ones are fetched at once.
    pub fn want<'a>(&self, uris: impl IntoIterator<Item = &'a str>) {
        if self.write().want(uris, Instant::now()) {
            self.wake.notify_one();
        }
    }

    /// A token's `kid` was missing from the set of `uri`.
    pub fn unknown_kid(&self, uri: &str) {
        if self.write().unknown_kid(uri, Instant::now()) {
            self.wake.notify_one();
        }
    }

    /// URIs wanted, and how many of them have a set.
    pub fn counts(&self) -> (usize, usize) {
        self.read().counts()
    }

    /// Fetches what falls due, forever; `observe` sees every fetch. Each
    /// fetch runs as a task of its own, so a key set whose server hangs
    /// until the timeout never holds back the refetch another set's unknown
    /// `kid` asked for.
    pub async fn run(
        self,
        fetcher: Fetcher,
        observe: impl Fn(Fetched<'_>) + Send + Sync + 'static,
    ) {
        // Far enough to mean "nothing due", near enough not to overflow.
        const IDLE: Duration = Duration::from_secs(3600);
        let observe = Arc::new(observe);
        loop {
            // Bound first: the lock is not held while tasks are spawned.
            let due = self.write().due(Instant::now());
            for uri in due {
                let (jwks, fetcher, observe) = (self.clone(), fetcher.clone(), observe.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = fetcher.fetch(&uri).await;
                    let seconds = started.elapsed().as_secs_f64();
                    let kept = jwks.write().finished(
                        &uri,
                        result.as_ref().map(Arc::clone).map_err(|_| ()),
                        Instant::now(),
                    );
                    observe(Fetched {
                        uri: &uri,
                        result: result.as_ref().map(|keys| keys.len()),
                        kept: &kept,
                        seconds,
                    });
                    // The set's next fetch is scheduled now: the loop looks again.
                    jwks.wake.notify_one();
                });
            }
            let next = self
                .read()
                .next_due()
                .unwrap_or_else(|| Instant::now() + IDLE);
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}
