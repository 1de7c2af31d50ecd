//! `docs/operator.md` keeps up with the binary: every flag with its
//! environment variable, and every metric the operator registers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::path::Path;

use clap::CommandFactory;
use meshguard_operator::controller::{cli::Flags, metrics::Metrics, run::Reports};

fn docs() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator.md"))
        .unwrap()
}

#[test]
fn every_flag_and_its_environment_variable_is_documented() {
    let docs = docs();
    let command = Flags::command();
    let mut flags = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        flags += 1;
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `--{long}` |")))
            .unwrap_or_else(|| panic!("docs/operator.md has no row for --{long}"));
        let env = arg.get_env().unwrap().to_str().unwrap();
        assert!(
            row.contains(&format!("`{env}`")),
            "--{long}: {env} not in {row}"
        );
        for default in arg.get_default_values() {
            let default = default.to_str().unwrap();
            assert!(
                row.contains(&format!("`{default}`")),
                "--{long}: default {default} not in {row}"
            );
        }
    }
    assert_eq!(flags, 12);
}

#[test]
fn every_metric_is_documented() {
    // The registry the operator serves: its metrics and its watches'.
    let reports = Reports::new();
    let metrics = &reports.metrics;
    // Labelled families print only once they have a child.
    metrics
        .reconciles
        .get_or_create(&Metrics::kind("NodePolicy"))
        .inc();
    metrics
        .errors
        .get_or_create(&Metrics::kind("NodePolicy"))
        .inc();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reports.shared.registry).unwrap();
    let docs = docs();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(families.len(), 11, "{text}");
    for family in families {
        let counter = format!("`{family}_total");
        let plain = format!("`{family}`");
        let labelled = format!("`{family}{{");
        assert!(
            docs.contains(&counter) || docs.contains(&plain) || docs.contains(&labelled),
            "docs/operator.md does not list {family}"
        );
    }
}
