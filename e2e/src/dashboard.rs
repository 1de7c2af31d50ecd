//! The Grafana dashboard and the alerts against what the binaries export:
//! the real operator's `/metrics` (started here, against an API server that
//! does not answer, so only its registrations show) and an agent's, scraped
//! by the caller after real traffic. `scripts/dashboard_metrics.py` parses
//! the queries with an independent PromQL parser and the scrapes with
//! Prometheus' own Python client.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use meshguard_testkit::tokens::{repo, venv_tool};
use serde_json::Value;

use crate::mesh::binary;

/// What the checker found.
#[derive(Debug)]
pub struct Report {
    /// Queries read (panel targets, variables, alert expressions).
    pub queries: usize,
    /// Every metric name the queries select.
    pub metrics: Vec<String>,
    /// `metric{label}` filters on families that had no sample to check them on.
    pub labels_unchecked: Vec<String>,
    /// Each query naming a metric or label not exported, or not parsing.
    pub problems: Vec<String>,
}

/// The dashboard the chart ships.
pub fn shipped() -> PathBuf {
    repo().join("docs/grafana/meshguard.json")
}

/// `/metrics` of the real `meshguard-operator`, run for as long as it takes
/// to answer once. Its API server refuses connections: the watches retry,
/// the metrics are registered all the same.
pub fn scrape_operator() -> anyhow::Result<String> {
    let dir = Scratch::new("operator")?;
    let api = free_port()?;
    let listen = free_port()?;
    let mut operator = meshguard_testkit::api_server::operator_command(
        binary("meshguard-operator")?,
        &dir.0,
        &format!("https://{api}"),
        listen,
    )?
    .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(body) = scrape(listen) {
            break Ok(body);
        }
        if let Some(status) = operator.try_wait()? {
            break Err(anyhow::anyhow!("meshguard-operator exited ({status})"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "meshguard-operator's /metrics did not answer in 20 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = operator.kill();
    let _ = operator.wait();
    body
}

/// Checks `dashboard` and the chart's alerts against `scrapes` (`/metrics`
/// bodies, or as `mesh-probe get` prints them: after a status line).
pub fn check(dashboard: &Path, scrapes: &[&str]) -> anyhow::Result<Report> {
    let dir = Scratch::new("check")?;
    let rules = dir.0.join("chart.yaml");
    let rendered = Command::new(venv_tool("python"))
        .arg(repo().join("scripts/chart.py"))
        .args([
            "render",
            "--values",
            r#"{"metrics":{"prometheusRule":{"enabled":true}}}"#,
        ])
        .output()?;
    if !rendered.status.success() {
        bail!(
            "chart.py render: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
    std::fs::write(&rules, &rendered.stdout)?;
    let mut args = vec![
        repo().join("scripts/dashboard_metrics.py").into_os_string(),
        "--dashboard".into(),
        dashboard.as_os_str().to_owned(),
        "--rules".into(),
        rules.into_os_string(),
    ];
    for (i, scrape) in scrapes.iter().enumerate() {
        let file = dir.0.join(format!("scrape-{i}.txt"));
        // `mesh-probe get` prints the answer's status line first.
        let body = match scrape.split_once('\n') {
            Some((status, body)) if status.starts_with("HTTP/") => body,
            _ => scrape,
        };
        std::fs::write(&file, body)?;
        args.extend(["--scrape".into(), file.into_os_string()]);
    }
    let out = Command::new(venv_tool("python")).args(&args).output()?;
    // 0: all found, 1: problems (in the report); anything else is bad input.
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!(
            "dashboard_metrics.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value =
        serde_json::from_slice(&out.stdout).context("dashboard_metrics.py's report")?;
    let strings = |field: &str| -> Vec<String> {
        report[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    Ok(Report {
        queries: report["queries"].as_u64().unwrap_or_default() as usize,
        metrics: strings("metrics"),
        labels_unchecked: strings("labelsUnchecked"),
        problems: strings("problems"),
    })
}

/// A directory of this process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> anyhow::Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("meshguard-dashboard-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/metrics` at `address` through `mesh-probe get` (the harness's own
/// HTTP getter), when the answer is 200.
fn scrape(address: SocketAddr) -> anyhow::Result<String> {
    let out = Command::new(binary("mesh-probe")?)
        .args(["get", &address.to_string(), "/metrics"])
        .output()?;
    let answer = String::from_utf8(out.stdout)?;
    let (status, body) = answer.split_once('\n').unwrap_or((&answer, ""));
    if !out.status.success() || !status.contains(" 200") {
        bail!("{status}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(body.to_owned())
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}
