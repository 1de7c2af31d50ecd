//! Watching the API as the operator and the agent do: kube's watcher with
//! its default backoff, listing again after any error, and each watch's
//! link to the API kept for readiness and metrics ([`health`]).
//!
//! kube-runtime 5.0 lists again when a watch *stream* reports 410 (an
//! ERROR event), but when the request that starts a watch is answered 410
//! it keeps the expired resourceVersion and retries it forever: a watcher
//! whose version expired while the API was away would never see another
//! change (for the agent: never a new NodePolicy; for the operator: never a
//! new policy). Here, after any error, the watcher is replaced by a new
//! one, which lists first: a 410 can no longer strand it, and the end of
//! that list ([`watcher::Event::InitDone`]) proves the API answers again —
//! a resumed watch says nothing until an object changes, so without the
//! list a quiet watch could not tell a recovered API from a dead one. The
//! backoff sits outside, so an API that fails every request is still asked
//! at most at the backoff's pace. client-go's reflector also lists again
//! after a failed watch.
//!
//! The backoff is kube's default (client-go's: 0.8 s doubling to 30 s,
//! jittered, back to the start after 120 s without an error) except for
//! when it starts over: kube's resets at every event, and every list
//! begins with one (`Event::Init`), so a list failing again and again was
//! retried every 0.8–1.6 s for as long as the API was down (51 requests per
//! watch in a 60-second outage, measured). Here only the 120 quiet seconds
//! start it over.

pub mod health;

use std::{fmt::Debug, time::Duration};

use futures::{Stream, StreamExt, stream::BoxStream};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        utils::Backoff,
        watcher::{self, DefaultBackoff},
    },
};
use serde::de::DeserializeOwned;

/// One watch event or the error the watcher met.
pub type Item<K> = Result<watcher::Event<K>, watcher::Error>;

/// `watcher(api, config)` with the default backoff, listing again after
/// any error.
pub fn relisting<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = Item<K>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let start = move || -> BoxStream<'static, Item<K>> {
        watcher::watcher(api.clone(), config.clone()).boxed()
    };
    let first = start();
    futures::stream::unfold((first, start), |(mut events, start)| async move {
        let item = events.next().await?;
        if let Err(error) = &item {
            if expired(error) {
                tracing::info!("the watch's resourceVersion expired (410 Gone): listing again");
            }
            events = start();
        }
        Some((item, (events, start)))
    })
    .backoff(Patient(DefaultBackoff::default()))
}

/// kube's default backoff, started over only by time (see the module doc).
struct Patient(DefaultBackoff);

impl Iterator for Patient {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl Backoff for Patient {
    /// Called at every event the watch yields, `Init` included: ignored.
    /// The inner backoff starts over after 120 s without an error.
    fn reset(&mut self) {}
}

/// A watch request answered `410 Gone`.
fn expired(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410
    )
}
