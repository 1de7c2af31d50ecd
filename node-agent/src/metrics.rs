//! `/metrics`: what the agent did (applies, their duration, drift repairs,
//! refused states), what it enforces (peers, rules), and per rule, read from
//! the kernel at each scrape, packets and bytes labelled by policy, rule,
//! direction and what the packets got — so every drop names its policy and
//! rule.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        MetricType, counter::ConstCounter, counter::Counter, family::Family, gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::backend::{RuleCounter, counted::Counted};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// One answered HTTP request: the chain (`-` when none served it), the
/// deciding step (`<index>:<kind>`, empty when it passed) and the outcome:
/// `passed`, `refused`, `audited` (an Audit-mode chain would have refused)
/// or `unmatched` (no chain, `--unmatched-route` decided).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub chain: String,
    pub step: String,
    pub outcome: &'static str,
}

/// The packet filter that runs, the one `--backend` asked for, and whether
/// `auto` fell back to iptables.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: &'static str,
    pub requested: &'static str,
    pub fallback: &'static str,
}

/// A step kind of a chain (`jwt`, `rateLimit`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepKindLabel {
    pub kind: &'static str,
}

/// What a resync repairs: the backends' [`crate::backend::Drift`] kinds and
/// the reconciler's own (routes, interface, peers).
const DRIFT_KINDS: [&str; 7] = [
    "rules",
    "hooks",
    "sets",
    "programs",
    "routes",
    "interface",
    "peers",
];

/// The results of a JWKS fetch: `ok` and each `FetchError::label`.
const FETCH_RESULTS: [&str; 5] = ["ok", "invalid", "http_error", "timeout", "unreachable"];

pub struct Metrics {
    pub backend: Family<BackendLabels, Gauge>,
    pub apply_seconds: Histogram,
    pub applies: Family<ResultLabel, Counter>,
    pub drift_repairs: Family<KindLabel, Counter>,
    pub rejected_states: Counter,
    pub latest_applied: Gauge,
    pub connections_cut: Counter,
    pub peers: Gauge,
    pub rules: Gauge,
    pub l7_requests: Family<RequestLabels, Counter>,
    pub l7_seconds: Histogram,
    pub l7_streams: Gauge,
    pub l7_chains: Gauge,
    pub l7_rate_limit_keys: Gauge,
    pub l7_verified_tokens: Gauge,
    pub l7_step_seconds: Family<StepKindLabel, Histogram>,
    pub jwks_fetches: Family<ResultLabel, Counter>,
    pub jwks_fetch_seconds: Histogram,
    pub jwks_sets: Gauge,
    pub jwks_missing: Gauge,
}

impl Metrics {
    /// The metrics, registered; `rule_counters` is asked at each scrape.
    pub fn new(registry: &mut Registry, rule_counters: ReadRuleCounters) -> Arc<Metrics> {
        let metrics = Metrics {
            backend: Family::default(),
            apply_seconds: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            applies: Family::default(),
            drift_repairs: Family::default(),
            rejected_states: Counter::default(),
            latest_applied: Gauge::default(),
            connections_cut: Counter::default(),
            peers: Gauge::default(),
            rules: Gauge::default(),
            l7_requests: Family::default(),
            l7_seconds: Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
            ]),
            l7_streams: Gauge::default(),
            l7_chains: Gauge::default(),
            l7_rate_limit_keys: Gauge::default(),
            l7_verified_tokens: Gauge::default(),
            l7_step_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.001,
                ])
            }),
            jwks_fetches: Family::default(),
            jwks_fetch_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            jwks_sets: Gauge::default(),
            jwks_missing: Gauge::default(),
        };
        // The label values known ahead at 0 from the start, so that rate()
        // and increase() — and the alerts built on them — see the first
        // failure, repair or refusal.
        for result in ["ok", "error"] {
            let _ = metrics.applies.get_or_create(&ResultLabel { result });
        }
        for kind in DRIFT_KINDS {
            let _ = metrics.drift_repairs.get_or_create(&KindLabel { kind });
        }
        for result in FETCH_RESULTS {
            let _ = metrics.jwks_fetches.get_or_create(&ResultLabel { result });
        }
        let _ = metrics.l7_requests.get_or_create(&RequestLabels {
            chain: "-".into(),
            step: String::new(),
            outcome: "unmatched",
        });
        let prefix = registry.sub_registry_with_prefix("meshguard_agent");
        prefix.register(
            "backend",
            "The packet filter that enforces (1), as --backend requested it; fallback=\"true\" when auto could not load the eBPF programs",
            metrics.backend.clone(),
        );
        prefix.register(
            "apply_duration_seconds",
            "Time to apply a desired state",
            metrics.apply_seconds.clone(),
        );
        prefix.register(
            "applies",
            "Applies of a desired state, by result",
            metrics.applies.clone(),
        );
        prefix.register(
            "drift_repairs",
            "Drift found by a resync and repaired, by kind",
            metrics.drift_repairs.clone(),
        );
        prefix.register(
            "latest_applied",
            "1 when the latest NodePolicy revision received is enforced; 0 while it is not (it failed or was refused: the previous one stays enforced) or none has arrived",
            metrics.latest_applied.clone(),
        );
        prefix.register(
            "rejected_states",
            "Desired states refused (corrupt, invalid, for another node)",
            metrics.rejected_states.clone(),
        );
        prefix.register(
            "connections_cut",
            "Groups of established connections (source, destination, protocol, port) cut because a new revision denies them",
            metrics.connections_cut.clone(),
        );
        prefix.register(
            "peers",
            "WireGuard peers on the interface",
            metrics.peers.clone(),
        );
        prefix.register(
            "rules",
            "Packet-filter rules installed for policy rules",
            metrics.rules.clone(),
        );
        prefix.register(
            "l7_requests",
            "HTTP requests answered over ext_proc, by chain, deciding step and outcome",
            metrics.l7_requests.clone(),
        );
        prefix.register(
            "l7_request_duration_seconds",
            "Time to evaluate a request's chain (selection included)",
            metrics.l7_seconds.clone(),
        );
        prefix.register(
            "l7_streams",
            "ext_proc streams open (one per HTTP request in flight)",
            metrics.l7_streams.clone(),
        );
        prefix.register(
            "l7_chains",
            "PolicyChains served over ext_proc",
            metrics.l7_chains.clone(),
        );
        prefix.register(
            "l7_rate_limit_keys",
            "Rate-limit buckets held (idle ones are dropped at each resync)",
            metrics.l7_rate_limit_keys.clone(),
        );
        prefix.register(
            "l7_verified_tokens",
            "Tokens remembered as verified, all chains (expired ones are dropped at each resync)",
            metrics.l7_verified_tokens.clone(),
        );
        prefix.register(
            "l7_step_duration_seconds",
            "Time of one chain step, by step kind",
            metrics.l7_step_seconds.clone(),
        );
        prefix.register(
            "jwks_fetches",
            "JWKS fetches (jwt steps with a uri), by result: ok, invalid (empty or unreadable; not used), http_error, timeout, unreachable",
            metrics.jwks_fetches.clone(),
        );
        prefix.register(
            "jwks_fetch_duration_seconds",
            "Time of one JWKS fetch",
            metrics.jwks_fetch_seconds.clone(),
        );
        prefix.register(
            "jwks_sets",
            "JWKS URIs of the chains served whose key set is held",
            metrics.jwks_sets.clone(),
        );
        prefix.register(
            "jwks_missing",
            "JWKS URIs of the chains served with no key set yet (their jwt steps answer 500, or are skipped under failureMode Open)",
            metrics.jwks_missing.clone(),
        );
        registry.register_collector(Box::new(RuleCollector {
            read: rule_counters,
            failed: AtomicU64::new(0),
        }));
        Arc::new(metrics)
    }
}

/// Reads the kernel's per-rule counters, or says why it could not.
pub type ReadRuleCounters =
    Arc<dyn Fn() -> Result<Vec<(RuleCounter, Counted)>, String> + Send + Sync>;

/// Per-rule kernel counters, read at scrape time. A read that fails is
/// logged and counted (`meshguard_agent_rule_counter_errors_total`): a
/// scrape without per-rule samples must not pass for "no traffic".
struct RuleCollector {
    read: ReadRuleCounters,
    failed: AtomicU64,
}

impl std::fmt::Debug for RuleCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    policy: String,
    rule: String,
    direction: &'static str,
    /// What the packets got (`backend::counted`): `dropped` picks the drops.
    verdict: &'static str,
}

impl Collector for RuleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = (self.read)().unwrap_or_else(|error| {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "per-rule counters not read: this scrape has none");
            Vec::new()
        });
        let failed = ConstCounter::new(self.failed.load(Ordering::Relaxed));
        failed.encode(encoder.encode_descriptor(
            "meshguard_agent_rule_counter_errors",
            "Scrapes whose per-rule counters could not be read from the kernel (they carry none)",
            None,
            MetricType::Counter,
        )?)?;
        for (name, help, bytes) in [
            (
                "meshguard_rule_packets",
                "Packets that matched a rule, by what they got (verdict: allowed, dropped, logged, audited, retired); meshguard:* ids are the agent's own rules",
                false,
            ),
            ("meshguard_rule_bytes", "Bytes that matched a rule", true),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (c, got) in &counters {
                let (policy, rule) =
                    c.id.split_once('/')
                        .unwrap_or(("meshguard", c.id.trim_start_matches("meshguard:")));
                let labels = RuleLabels {
                    policy: policy.to_owned(),
                    rule: rule.to_owned(),
                    direction: c.direction.label(),
                    verdict: got.label(),
                };
                let value = ConstCounter::new(if bytes { c.bytes } else { c.packets });
                value.encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use std::sync::atomic::AtomicBool;

    use meshguard_crds::watch::health::Watches;

    use super::*;

    /// Every family the agent serves in a cluster (its metrics, the rule
    /// counters, its watches') is named in docs/agent.md.
    #[test]
    fn every_metric_is_documented() {
        let mut registry = Registry::default();
        let _metrics = Metrics::new(&mut registry, Arc::new(|| Ok(Vec::new())));
        registry.register_collector(
            Watches::new(crate::state::kube::WATCHES).collector("meshguard_agent"),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent.md"),
        )
        .unwrap();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert!(families.len() >= 22, "{text}");
        let missing: Vec<&&str> = families
            .iter()
            .filter(|family| {
                ![
                    format!("`{family}_total"),
                    format!("`{family}`"),
                    format!("`{family}{{"),
                ]
                .iter()
                .any(|named| docs.contains(named.as_str()))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/agent.md does not list {missing:?}"
        );
    }

    /// A failed read of the kernel's counters is counted, not passed off
    /// as a scrape with no traffic.
    #[test]
    fn a_failed_counter_read_is_counted() {
        let mut registry = Registry::default();
        let fail = Arc::new(AtomicBool::new(false));
        let failing = Arc::clone(&fail);
        let _metrics = Metrics::new(
            &mut registry,
            Arc::new(move || {
                if failing.load(Ordering::Relaxed) {
                    Err("iptables -L: exit 4".to_owned())
                } else {
                    Ok(Vec::new())
                }
            }),
        );
        let scrape = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        assert!(scrape().contains("meshguard_agent_rule_counter_errors_total 0"));
        fail.store(true, Ordering::Relaxed);
        scrape();
        let text = scrape();
        assert!(
            text.contains("meshguard_agent_rule_counter_errors_total 2"),
            "{text}"
        );
    }
}
