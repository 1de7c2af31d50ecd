//! Whether each watch is in step with the API, for `/readyz` and
//! `/metrics`.
//!
//! A watch is in sync from the end of a complete list until its next error.
//! After an error the watch lists again ([`super::relisting`]), so the end
//! of that list is the first sign that the API answers again; until then
//! the process works from what it last saw (the agent keeps enforcing its
//! last NodePolicy, the operator keeps its index and writes nothing new),
//! and says so: `/readyz` answers 503 naming the watch, the watch's
//! `watch_synced` gauge is 0 and its `watch_errors` counter counts the
//! failed requests.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use kube::runtime::watcher::Event;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::Item;

/// How much of an error a readiness answer repeats.
const ERROR_CHARS: usize = 300;

/// The links of a process's watches; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Watches {
    links: Arc<Mutex<BTreeMap<&'static str, Link>>>,
}

#[derive(Clone, Debug)]
struct Link {
    synced: bool,
    /// Failed requests since the process started.
    errors: u64,
    /// When the link last changed between in sync and out of it.
    since: Instant,
    /// The last error since the link went out of sync.
    error: Option<String>,
}

impl Link {
    fn new() -> Link {
        Link {
            synced: false,
            errors: 0,
            since: Instant::now(),
            error: None,
        }
    }
}

impl Watches {
    /// Every watch the process runs, by name, none in sync yet: a watch
    /// that never lists keeps the process unready.
    pub fn new(names: impl IntoIterator<Item = &'static str>) -> Watches {
        let links = names.into_iter().map(|name| (name, Link::new())).collect();
        Watches {
            links: Arc::new(Mutex::new(links)),
        }
    }

    /// What an item of watch `name` says about its link: the end of a list
    /// puts it in sync, an error takes it out.
    pub fn observe<K>(&self, name: &'static str, item: &Item<K>) {
        let mut links = self.lock();
        let link = links.entry(name).or_insert_with(Link::new);
        match item {
            Ok(Event::InitDone) if !link.synced => {
                if link.error.is_some() {
                    tracing::info!(
                        watch = name,
                        out_of_sync_s = link.since.elapsed().as_secs(),
                        "watch in sync again"
                    );
                }
                (link.synced, link.since, link.error) = (true, Instant::now(), None);
            }
            Err(error) => {
                link.errors += 1;
                if link.synced {
                    (link.synced, link.since) = (false, Instant::now());
                }
                link.error = Some(error.to_string().chars().take(ERROR_CHARS).collect());
            }
            Ok(_) => {}
        }
    }

    /// One line per watch out of sync, saying since when and why; empty
    /// when every watch is in sync.
    pub fn out_of_sync(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, link)| !link.synced)
            .map(|(name, link)| {
                let seconds = link.since.elapsed().as_secs();
                match &link.error {
                    None => format!("{name} watch: not listed yet ({seconds} s)"),
                    Some(error) => format!(
                        "{name} watch: out of sync with the API for {seconds} s ({} failed requests in all), last error: {error}",
                        link.errors
                    ),
                }
            })
            .collect()
    }

    /// The answer of `/readyz` for a process that is `started` (or says
    /// why not): ready while every watch is in sync; otherwise `kept` (what
    /// stays in use meanwhile) and one line per watch out of sync.
    pub fn readiness(&self, started: Result<(), &str>, kept: &str) -> (bool, String) {
        if let Err(why) = started {
            return (false, format!("{why}\n"));
        }
        let out_of_sync = self.out_of_sync();
        if out_of_sync.is_empty() {
            return (true, "ready\n".to_owned());
        }
        (false, format!("{kept}:\n{}\n", out_of_sync.join("\n")))
    }

    /// `<prefix>_watch_synced{watch}` (1 or 0) and
    /// `<prefix>_watch_errors_total{watch}`, read at each scrape; every
    /// watch named in [`Watches::new`] is there from the start.
    pub fn collector(&self, prefix: &'static str) -> Box<dyn Collector> {
        Box::new(LinkCollector {
            watches: self.clone(),
            prefix,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Link>> {
        // A panic while holding the lock leaves plain counters and flags:
        // still worth reading.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct LinkCollector {
    watches: Watches,
    prefix: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabel {
    watch: &'static str,
}

impl Collector for LinkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let links: Vec<(&'static str, Link)> = self
            .watches
            .lock()
            .iter()
            .map(|(name, link)| (*name, link.clone()))
            .collect();
        let name = format!("{}_watch_synced", self.prefix);
        let mut family = encoder.encode_descriptor(
            &name,
            "1 while the watch is in step with the API (listed, no error since), 0 while it is not: what it last saw stays in use",
            None,
            MetricType::Gauge,
        )?;
        for (watch, link) in &links {
            ConstGauge::new(i64::from(link.synced))
                .encode(family.encode_family(&WatchLabel { watch })?)?;
        }
        let name = format!("{}_watch_errors", self.prefix);
        let mut family = encoder.encode_descriptor(
            &name,
            "Failed requests of the watch (lists and watches); each is retried with backoff",
            None,
            MetricType::Counter,
        )?;
        for (watch, link) in &links {
            ConstCounter::new(link.errors).encode(family.encode_family(&WatchLabel { watch })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher;
    use prometheus_client::registry::Registry;

    use super::*;

    fn failed() -> Item<ConfigMap> {
        Err(watcher::Error::NoResourceVersion)
    }

    fn scrape(watches: &Watches) -> String {
        let mut registry = Registry::default();
        registry.register_collector(watches.collector("meshguard_test"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_watch_is_in_sync_from_a_complete_list_until_an_error() {
        let watches = Watches::new(["NodePolicy", "MeshNode"]);
        assert_eq!(watches.out_of_sync().len(), 2, "nothing listed yet");
        assert!(watches.out_of_sync()[0].contains("not listed yet"));

        for item in [Ok(Event::Init), Ok(Event::InitDone)] {
            watches.observe::<ConfigMap>("MeshNode", &item);
        }
        watches.observe::<ConfigMap>("NodePolicy", &Ok(Event::Init));
        let lines = watches.out_of_sync();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("NodePolicy watch"),
            "a list begun is not a list done: {lines:?}"
        );
        watches.observe::<ConfigMap>("NodePolicy", &Ok(Event::InitDone));
        assert_eq!(watches.out_of_sync(), Vec::<String>::new());

        watches.observe("MeshNode", &failed());
        watches.observe("MeshNode", &failed());
        watches.observe::<ConfigMap>("MeshNode", &Ok(Event::Init));
        let lines = watches.out_of_sync();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("MeshNode watch: out of sync")
                && lines[0].contains("2 failed requests")
                && lines[0].contains("resourceVersion"),
            "{lines:?}"
        );
        let text = scrape(&watches);
        for line in [
            "meshguard_test_watch_synced{watch=\"MeshNode\"} 0",
            "meshguard_test_watch_synced{watch=\"NodePolicy\"} 1",
            "meshguard_test_watch_errors_total{watch=\"MeshNode\"} 2",
            "meshguard_test_watch_errors_total{watch=\"NodePolicy\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }

        watches.observe::<ConfigMap>("MeshNode", &Ok(Event::InitDone));
        assert!(watches.out_of_sync().is_empty());
        assert!(scrape(&watches).contains("meshguard_test_watch_synced{watch=\"MeshNode\"} 1"));
        assert!(
            scrape(&watches).contains("meshguard_test_watch_errors_total{watch=\"MeshNode\"} 2"),
            "the count of errors is kept"
        );
    }
}
