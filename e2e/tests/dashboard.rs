//! The dashboard check itself: it finds what is missing. (The shipped
//! dashboard and alerts against a real agent after real traffic are checked
//! in `l7.rs`, where every metric has samples.) No root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use meshguard_e2e::dashboard::{check, scrape_operator, shipped};
use serde_json::{Value, json};

#[test]
fn the_operators_panels_query_only_what_it_exports_and_the_rest_is_the_agents() {
    let operator = scrape_operator().unwrap();
    let report = check(&shipped(), &[&operator]).unwrap();
    assert!(report.queries >= 30, "{report:?}");
    // Without an agent's scrape, exactly the agent's metrics are missing.
    let missing: Vec<&String> = report
        .metrics
        .iter()
        .filter(|m| {
            report
                .problems
                .iter()
                .any(|p| p.contains(&format!(" {m} ")))
        })
        .collect();
    assert!(!missing.is_empty(), "{report:?}");
    for name in &missing {
        assert!(
            name.starts_with("meshguard_agent_") || name.starts_with("meshguard_rule_"),
            "{name}: the operator's panels query a metric it does not export\n{report:?}"
        );
    }
    for name in [
        "meshguard_operator_policies",
        "meshguard_operator_rejected_objects",
        "meshguard_operator_members",
        "meshguard_operator_reconciles_total",
        "meshguard_operator_reconcile_errors_total",
        "meshguard_operator_compile_duration_seconds_bucket",
    ] {
        assert!(
            report.metrics.iter().any(|m| m == name),
            "{name} is queried"
        );
        assert!(!missing.iter().any(|m| *m == name), "{name} is exported");
    }
}

#[test]
fn a_query_over_a_missing_metric_or_label_or_that_does_not_parse_fails_the_check() {
    let operator = scrape_operator().unwrap();
    let mut dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(shipped()).unwrap()).unwrap();
    let target = |expr: &str| json!({ "refId": "A", "expr": expr });
    dashboard["panels"] = json!([
        { "title": "fine", "targets": [target("sum(rate(meshguard_operator_reconciles_total{kind=\"NodePolicy\"}[$__rate_interval]))")] },
        { "title": "no such metric", "targets": [target("sum(rate(meshguard_operator_nodes_total[5m]))")] },
        { "title": "no such label", "targets": [target("meshguard_operator_reconciles_total{verdict=\"dropped\"}")] },
        { "title": "broken", "targets": [target("sum(rate(meshguard_operator_members[5m])")] },
        { "title": "constant", "targets": [target("vector(1)")] },
    ]);
    dashboard["templating"]["list"] = json!([]);
    let file =
        std::env::temp_dir().join(format!("meshguard-dashboard-{}.json", std::process::id()));
    std::fs::write(&file, dashboard.to_string()).unwrap();
    let report = check(&file, &[&operator]).unwrap();
    std::fs::remove_file(&file).unwrap();
    let about = |title: &str| -> Vec<&String> {
        report
            .problems
            .iter()
            .filter(|p| p.starts_with(&format!("panel \"{title}\"")))
            .collect()
    };
    assert!(about("fine").is_empty(), "{report:?}");
    assert!(
        about("no such metric")[0].contains("meshguard_operator_nodes_total is not exported"),
        "{report:?}"
    );
    assert!(
        about("no such label")[0].contains("has no label 'verdict'"),
        "{report:?}"
    );
    assert!(about("broken")[0].contains("does not parse"), "{report:?}");
    assert!(
        about("constant")[0].contains("queries no metric"),
        "{report:?}"
    );
}
