//! `meshguard diff` against brute force: random policy sets and random edits
//! (the soak's shapes, plus CIDR ranges that are no member's, UDP and SCTP,
//! members added and removed, labels changed). Every (source, destination,
//! protocol, port) drawn from the boundaries that matter is decided by
//! `meshguard check --flows` on both sides; the flow changes verdict exactly
//! when one entry of `diff -o json` covers it — none missing, none twice —
//! and that entry's verdicts are `check`'s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use meshguard_policy::addresses::Prefix;
use meshguard_testkit::{
    random_policy::{self, member_selector},
    rng::Rng,
};
use serde_json::Value;

mod support;

use support::{check_flows, examples_with, meshguard, quarantine_web_2};

const NAMES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
/// Addresses that are no member's on either side (members get 100.96.0.1-5).
const ADDRESSES: [&str; 7] = [
    "10.0.0.1",
    "10.1.2.3",
    "10.255.255.255",
    "192.168.1.1",
    "100.96.0.200",
    "8.8.8.8",
    "fd00::1",
];
const PORTS: [u16; 13] = [1, 21, 22, 23, 52, 53, 79, 80, 81, 443, 444, 5432, 65535];

/// The soak's member selectors, or one of three address ranges that are
/// no member's (10/8 with a hole, a v4 and a v6 range, everything).
fn selector(rng: &mut Rng) -> String {
    match rng.below(10) {
        7 => "{ cidrs: [{ cidr: 10.0.0.0/8, except: [10.1.0.0/16] }] }".into(),
        8 => "{ cidrs: [{ cidr: 192.168.0.0/16 }, { cidr: \"fd00::/8\" }] }".into(),
        9 => "{ cidrs: [{ cidr: 0.0.0.0/0 }] }".into(),
        _ => member_selector(rng, &NAMES),
    }
}

fn ports(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => String::new(),
        1 => "\n    ports: [{ protocol: ICMP }]".into(),
        2 => "\n    ports: [{ protocol: TCP, port: 80, endPort: 443 }]".into(),
        3 => "\n    ports: [{ protocol: UDP, port: 53 }, { protocol: SCTP }]".into(),
        4 => "\n    ports: [{ protocol: TCP }]".into(),
        _ => format!(
            "\n    ports: [{{ protocol: TCP, port: {} }}, {{ protocol: ICMP }}]",
            rng.pick(&[22u16, 80, 443, 5432])
        ),
    }
}

fn policy(rng: &mut Rng, p: usize) -> String {
    random_policy::policy(rng, p, selector, ports)
}

fn member(name: &str, role: &str, zone: &str) -> String {
    let letter = (b'A' + name.as_bytes()[1] - b'0') as char;
    format!(
        "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {name}, labels: {{ role: \"{role}\", zone: \"{zone}\" }} }}\nspec: {{ publicKey: \"{}A=\" }}\n",
        letter.to_string().repeat(42)
    )
}

/// One side: members (name → role, zone) and policies.
#[derive(Clone)]
struct Side {
    members: BTreeMap<&'static str, (&'static str, &'static str)>,
    policies: Vec<String>,
}

impl Side {
    fn random(rng: &mut Rng) -> Side {
        let mut members = BTreeMap::new();
        for name in NAMES {
            if rng.below(6) != 0 {
                let labels = (*rng.pick(&["a", "b"]), *rng.pick(&["x", "y"]));
                members.insert(name, labels);
            }
        }
        let policies = (0..=rng.below(4)).map(|p| policy(rng, p)).collect();
        Side { members, policies }
    }

    /// One to three edits: a policy replaced, added or removed, a member
    /// added or removed, a label changed.
    fn edited(&self, rng: &mut Rng) -> Side {
        let mut side = self.clone();
        for _ in 0..=rng.below(3) {
            match rng.below(6) {
                0 | 1 => {
                    let p = rng.below(side.policies.len());
                    side.policies[p] = policy(rng, p);
                }
                2 => {
                    let p = side.policies.len();
                    side.policies.push(policy(rng, p));
                }
                3 if side.policies.len() > 1 => {
                    side.policies.pop();
                }
                4 => {
                    let name = *rng.pick(&NAMES);
                    if side.members.remove(name).is_none() {
                        side.members.insert(name, ("a", "x"));
                    }
                }
                _ => {
                    let name = *rng.pick(&NAMES);
                    if let Some(labels) = side.members.get_mut(name) {
                        labels.0 = if labels.0 == "a" { "b" } else { "a" };
                    }
                }
            }
        }
        side
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let members: String = self
            .members
            .iter()
            .map(|(n, (role, zone))| member(n, role, zone))
            .collect();
        std::fs::write(dir.join("members.yaml"), members).unwrap();
        std::fs::write(dir.join("policies.yaml"), self.policies.concat()).unwrap();
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Flow {
    from: String,
    to: String,
    protocol: &'static str,
    port: Option<u16>,
}

fn flows(ends: &[String]) -> Vec<Flow> {
    let mut out = Vec::new();
    for from in ends {
        for to in ends.iter().filter(|to| *to != from) {
            for protocol in ["TCP", "UDP", "SCTP"] {
                for port in PORTS {
                    out.push(Flow {
                        from: from.clone(),
                        to: to.clone(),
                        protocol,
                        port: Some(port),
                    });
                }
            }
            out.push(Flow {
                from: from.clone(),
                to: to.clone(),
                protocol: "ICMP",
                port: None,
            });
        }
    }
    out
}

/// `check --flows` on one side: the verdict of each flow whose ends exist
/// there; a member the side lacks has no flows (Deny).
fn decide(dir: &Path, side: &Side, all: &[Flow]) -> Vec<String> {
    let exists = |end: &str| !end.starts_with('n') || side.members.contains_key(end);
    let asked: Vec<&Flow> = all
        .iter()
        .filter(|f| exists(&f.from) && exists(&f.to))
        .collect();
    let lines: String = asked
        .iter()
        .map(|f| match f.port {
            Some(port) => format!("{} {} {} {port}\n", f.from, f.to, f.protocol),
            None => format!("{} {} {}\n", f.from, f.to, f.protocol),
        })
        .collect();
    let mut answers = check_flows(dir, &lines, dir)
        .into_iter()
        .map(|v| v["verdict"].as_str().unwrap().to_owned());
    all.iter()
        .map(|f| {
            if exists(&f.from) && exists(&f.to) {
                answers.next().unwrap()
            } else {
                "Deny".to_owned()
            }
        })
        .collect()
}

/// Whether the diff's `end` (a member name, or `CIDR [except CIDR, …]`) holds `name`.
fn covers(end: &str, name: &str) -> bool {
    if name.starts_with('n') {
        return end == name;
    }
    let ip: IpAddr = name.parse().unwrap();
    let (prefix, except) = end.split_once(" except ").unwrap_or((end, ""));
    let Ok(prefix) = prefix.parse::<Prefix>() else {
        return false;
    };
    prefix.contains_ip(ip)
        && !except
            .split(", ")
            .filter(|e| !e.is_empty())
            .any(|e| e.parse::<Prefix>().unwrap().contains_ip(ip))
}

fn in_ports(change: &Value, port: Option<u16>) -> bool {
    let Some(ports) = change["ports"].as_str() else {
        return true;
    };
    let port = port.unwrap();
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    (lo.parse::<u16>().unwrap()..=hi.parse::<u16>().unwrap()).contains(&port)
}

#[test]
fn every_flow_that_changes_verdict_is_listed_once_and_nothing_else() {
    let root = std::env::temp_dir().join(format!("meshguard-diff-{}", std::process::id()));
    let ends: Vec<String> = NAMES
        .iter()
        .map(|n| n.to_string())
        .chain(ADDRESSES.iter().map(|a| a.to_string()))
        .collect();
    let all = flows(&ends);
    let (mut cases, mut compared, mut changed) = (0, 0, 0);
    for case in 0..80u64 {
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(case + 1);
        let mut rng = Rng::new(seed);
        let before = Side::random(&mut rng);
        let after = before.edited(&mut rng);
        let (b, a): (PathBuf, PathBuf) = (
            root.join(format!("{case}/before")),
            root.join(format!("{case}/after")),
        );
        before.write(&b);
        after.write(&a);
        let out = meshguard(&[
            "diff",
            "--before",
            b.to_str().unwrap(),
            "--after",
            a.to_str().unwrap(),
            "-o",
            "json",
        ]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("seed {seed}: {e}: {}", String::from_utf8_lossy(&out.stderr))
        });
        let changes = report["changes"].as_array().unwrap();
        let (verdicts_before, verdicts_after) =
            (decide(&b, &before, &all), decide(&a, &after, &all));
        for (i, flow) in all.iter().enumerate() {
            let covering: Vec<&Value> = changes
                .iter()
                .filter(|c| {
                    covers(c["from"].as_str().unwrap(), &flow.from)
                        && covers(c["to"].as_str().unwrap(), &flow.to)
                        && c["protocol"] == flow.protocol
                        && in_ports(c, flow.port)
                })
                .collect();
            let (was, is) = (&verdicts_before[i], &verdicts_after[i]);
            if was == is {
                assert!(
                    covering.is_empty(),
                    "seed {seed}: {flow:?} stays {was} but diff lists {covering:?}"
                );
            } else {
                changed += 1;
                assert_eq!(
                    covering.len(),
                    1,
                    "seed {seed}: {flow:?} {was} → {is}: listed {covering:?}"
                );
                assert_eq!(
                    (
                        covering[0]["before"].as_str().unwrap(),
                        covering[0]["after"].as_str().unwrap()
                    ),
                    (was.as_str(), is.as_str()),
                    "seed {seed}: {flow:?}"
                );
            }
            compared += 1;
        }
        let expected_exit = if changes.is_empty() { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(expected_exit), "seed {seed}");
        cases += 1;
    }
    std::fs::remove_dir_all(&root).unwrap();
    eprintln!(
        "{cases} random edits, {compared} flows compared with check, {changed} changed verdict"
    );
    assert!(
        changed > 1000,
        "the edits change too little to prove anything: {changed}"
    );
}

/// The README's example: quarantining web-2 (examples/quarantine.yaml)
/// closes every flow of web-2 and opens nothing.
#[test]
fn the_quarantine_closes_web_2_and_opens_nothing() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff-quarantine");
    let _ = std::fs::remove_dir_all(&root);
    let before = examples_with(&root.join("before"), |_, text| text);
    let after = examples_with(&root.join("after"), quarantine_web_2);
    let (b, a) = (before.to_str().unwrap(), after.to_str().unwrap());

    let out = meshguard(&["diff", "--before", b, "--after", a]);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "bastion-1 → web-2 TCP/22: Allow (bastion-ssh/ssh) → Deny (quarantine/quarantined-in)"
        ),
        "{shown}"
    );
    assert!(shown.contains("\n0 flows opened, "), "{shown}");
    // The README shows this very run: every line it shows is in the output.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let shown_there = readme
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    for line in shown_there.lines().filter(|l| *l != "…") {
        assert!(
            shown.lines().any(|l| l == line),
            "README.md shows {line:?}, not in\n{shown}"
        );
    }
    // Tightening only: a gate on widening lets it through; the way back opens.
    let out = meshguard(&["diff", "--before", b, "--after", a, "--fail-on", "opened"]);
    assert_eq!(out.status.code(), Some(0));
    let out = meshguard(&["diff", "--before", a, "--after", b, "--fail-on", "opened"]);
    assert_eq!(out.status.code(), Some(1));

    let out = meshguard(&["diff", "--before", b, "--after", a, "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for change in changes {
        assert!(
            change["from"] == "web-2" || change["to"] == "web-2",
            "{change}"
        );
        assert_eq!(
            (change["before"].as_str(), change["after"].as_str()),
            (Some("Allow"), Some("Deny"))
        );
        assert_eq!(change["afterBy"]["policy"], "quarantine");
        assert!(
            matches!(change["peerChange"].as_str(), None | Some("removed")),
            "{change}"
        );
    }
    assert_eq!(report["summary"]["flowsClosed"], changes.len());
    assert_eq!(report["summary"]["flowsOpened"], 0);
    assert!(report["summary"]["peersRemoved"].as_u64().unwrap() > 0);

    let out = meshguard(&["diff", "--before", b, "--after", a, "-o", "markdown"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("### meshguard diff\n"), "{table}");
    assert!(
        table.contains("| From | To | Traffic | Before | After |"),
        "{table}"
    );
    assert!(
        table.contains("- peers removed: `bastion-1` ↔ `web-2`"),
        "{table}"
    );

    let out = meshguard(&["diff", "--before", b, "--after", b]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("no flow changes verdict\n")
    );
}

#[test]
fn bad_input_on_either_side_exits_2_naming_the_file() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff-bad");
    let _ = std::fs::remove_dir_all(&root);
    let before = examples_with(&root.join("before"), |_, text| text);
    let after = examples_with(&root.join("after"), |name, text| {
        if name == "three-tier.yaml" {
            text.replacen("action: Allow", "action: Permit", 1)
        } else {
            text
        }
    });
    let out = meshguard(&[
        "diff",
        "--before",
        before.to_str().unwrap(),
        "--after",
        after.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("after/three-tier.yaml") && error.contains("action"),
        "{error}"
    );
}

/// The pull-request workflow docs/gitops.md ships: every `meshguard`
/// command in it parses with this CLI, the diff step tells a change (1)
/// from bad input (2), and the job may comment.
#[test]
fn the_review_workflow_runs_commands_this_cli_accepts() {
    use clap::Parser;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let text = std::fs::read_to_string(repo.join("deploy/github/meshguard-review.yaml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(workflow["permissions"]["pull-requests"], "write");
    assert!(workflow["on"]["pull_request"].is_object(), "{workflow}");
    let steps = workflow["jobs"]["review"]["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let mut commands = 0;
    for run in &runs {
        let joined = run.replace("\\\n", " ");
        for line in joined.lines() {
            let Some(at) = line.find("meshguard ") else {
                continue;
            };
            if line[..at].ends_with('/') || line[..at].ends_with('-') {
                continue; // a path or an image name, not the command
            }
            let command: String = line[at..].split(['>', '|']).next().unwrap().to_owned();
            let words: Vec<&str> = command.split_whitespace().collect();
            meshguard_cli::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{command}: {e}"));
            commands += 1;
        }
    }
    assert_eq!(
        commands, 4,
        "validate, diff -o markdown, matrix --before, diff --fail-on opened"
    );
    assert!(runs.iter().any(|r| r.contains("meshguard matrix")
        && r.contains("--before")
        && r.contains("> matrix.html")));
    assert!(steps.iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
            && s["with"]["path"] == "matrix.html"
    }));
    let diff_step = runs.iter().find(|r| r.contains("-o markdown")).unwrap();
    assert!(
        diff_step.contains(r#"[ "$status" -le 1 ] || exit "$status""#),
        "{diff_step}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("gh pr comment") && r.contains("--body-file diff.md"))
    );
}
