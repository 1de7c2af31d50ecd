//! `meshguard matrix` read back by parsers that are not ours — lxml
//! (libxml2) for SVG, html5lib (the WHATWG algorithm) for HTML, through
//! `scripts/matrix_check.py` — and held to `meshguard check --flows`: one
//! cell per member pair (or per pair of groups, covering every member pair
//! once), coloured as `check`'s verdicts over the cell's traffic say, naming
//! the rules `check` names, and outlined exactly where `check` answers
//! differently before and after a change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use meshguard_testkit::{
    pictures::{self, Picture},
    random_policy,
    rng::Rng,
    tokens::repo,
};
use serde_json::Value;

mod support;

use support::{check_flows, examples_with, meshguard, quarantine_web_2};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("matrix-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `meshguard matrix` with `args`, written to `out`, read back by the
/// script: its one picture.
fn picture(args: &[&str], out: &Path) -> Picture {
    let run = meshguard(&[&["matrix"], args].concat());
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::write(out, &run.stdout).unwrap();
    let mut pictures = pictures::read(out);
    assert_eq!(pictures.len(), 1);
    pictures.remove(0)
}

/// The members `meshguard compile` writes a NodePolicy for.
fn compiled_members(inputs: &Path, scratch: &Path) -> Vec<String> {
    let out = scratch.join("compiled");
    let run = support::compile(inputs, &out);
    assert_eq!(run.status.code(), Some(0));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            path.file_stem().unwrap().to_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

/// (protocol, port) flows, as `check --flows` takes them.
type Flow = (&'static str, Option<u16>);

fn traffic_text((protocol, port): Flow) -> String {
    match port {
        Some(port) => format!("{protocol}/{port}"),
        None => protocol.to_owned(),
    }
}

/// `check --flows` for every ordered pair of distinct members and every
/// flow: (pair, flow) → (verdict, `(policy/rule)` or `(default deny)`).
fn check_all(
    inputs: &Path,
    members: &[String],
    flows: &[Flow],
    scratch: &Path,
) -> BTreeMap<(String, String), Vec<(String, String)>> {
    let mut asked = Vec::new();
    let mut lines = String::new();
    for a in members {
        for b in members.iter().filter(|b| *b != a) {
            asked.push((a.clone(), b.clone()));
            for (protocol, port) in flows {
                match port {
                    Some(port) => lines.push_str(&format!("{a} {b} {protocol} {port}\n")),
                    None => lines.push_str(&format!("{a} {b} {protocol}\n")),
                }
            }
        }
    }
    let answers: Vec<(String, String)> = check_flows(inputs, &lines, scratch)
        .into_iter()
        .map(|v| {
            let by = match (&v["policy"], &v["rule"]) {
                (Value::String(p), Value::String(r)) => format!("({p}/{r})"),
                (Value::String(p), r) => format!("({p}/{r})"),
                _ => "(default deny)".to_owned(),
            };
            (v["verdict"].as_str().unwrap().to_owned(), by)
        })
        .collect();
    assert_eq!(answers.len(), asked.len() * flows.len());
    asked
        .into_iter()
        .zip(answers.chunks(flows.len()))
        .map(|(pair, chunk)| (pair, chunk.to_vec()))
        .collect()
}

/// The state `check`'s verdicts give a cell.
fn state(answers: &[(String, String)]) -> &'static str {
    let allowed = answers.iter().filter(|(v, _)| v == "Allow").count();
    match allowed {
        0 => "deny",
        n if n == answers.len() => "allow",
        _ => "partial",
    }
}

/// Every port a rule of the files at `dir` starts or ends at, with its
/// neighbours, and the ends of the port space: between two of these no
/// decision can change, so they sample every run of ports.
fn boundary_ports(dir: &Path) -> BTreeSet<u16> {
    let mut ports = BTreeSet::from([1u16, 65535]);
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if let Ok(port) = word.parse::<u16>()
                && port > 0
            {
                ports.extend([port - 1, port, port.saturating_add(1)]);
            }
        }
    }
    ports.remove(&0);
    ports
}

fn every_flow(ports: &BTreeSet<u16>) -> Vec<Flow> {
    let mut flows = Vec::new();
    for protocol in ["TCP", "UDP", "SCTP"] {
        flows.extend(ports.iter().map(|&p| (protocol, Some(p))));
    }
    flows.push(("ICMP", None));
    flows
}

fn examples() -> PathBuf {
    repo().join("examples")
}

#[test]
fn each_pair_of_examples_has_one_cell_with_the_verdicts_and_rules_check_gives() {
    let dir = scratch("ports");
    let members = compiled_members(&examples(), &dir);
    assert!(members.len() > 5);
    let lists: [(&str, Vec<Flow>); 2] = [
        (
            "22,tcp/443,5432,udp/53,icmp",
            vec![
                ("TCP", Some(22)),
                ("TCP", Some(443)),
                ("TCP", Some(5432)),
                ("UDP", Some(53)),
                ("ICMP", None),
            ],
        ),
        ("5432,icmp", vec![("TCP", Some(5432)), ("ICMP", None)]),
    ];
    let mut states = BTreeMap::new();
    for ((list, flows), format) in lists
        .iter()
        .flat_map(|l| ["svg", "html"].map(|format| (l, format)))
    {
        let answers = check_all(&examples(), &members, flows, &dir);
        let shown = picture(
            &[
                "-f",
                examples().to_str().unwrap(),
                "-o",
                format,
                "--ports",
                list,
            ],
            &dir.join(format!("matrix.{format}")),
        );
        // One row per member, in name order: no grouping at this size.
        assert_eq!(
            shown.rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
            members
        );
        assert!(shown.rows.iter().all(|r| r.len() == 1));
        for (row, from) in members.iter().enumerate() {
            for (col, to) in members.iter().enumerate() {
                let cell = &shown.cells[&(row, col)];
                let lines = shown.lines((row, col));
                if from == to {
                    assert_eq!(cell["state"], "itself");
                    assert!(lines.is_empty());
                    continue;
                }
                let answers = &answers[&(from.clone(), to.clone())];
                assert_eq!(cell["state"], state(answers), "{format} {from} → {to}");
                *states.entry(state(answers)).or_insert(0) += 1;
                let all_same = answers.iter().all(|a| *a == answers[0]);
                for (flow, (verdict, by)) in flows.iter().zip(answers) {
                    let line = if all_same {
                        format!("all of it: {verdict} {by}")
                    } else if by == "(default deny)" {
                        format!("everything else: {verdict} {by}")
                    } else {
                        format!("{}: {verdict} {by}", traffic_text(*flow))
                    };
                    assert!(
                        lines.contains(&line),
                        "{format} {from} → {to}: {line:?} not in {lines:?}"
                    );
                }
            }
        }
    }
    // The examples show all three colours, so a picture of one colour
    // cannot pass.
    assert_eq!(states.len(), 3, "{states:?}");
}

#[test]
fn every_protocol_and_port_cells_agree_with_check_at_every_boundary() {
    let dir = scratch("all");
    let members = compiled_members(&examples(), &dir);
    let flows = every_flow(&boundary_ports(&examples()));
    let answers = check_all(&examples(), &members, &flows, &dir);
    let shown = picture(
        &["-f", examples().to_str().unwrap(), "-o", "svg"],
        &dir.join("matrix.svg"),
    );
    for (row, from) in members.iter().enumerate() {
        for (col, to) in members.iter().enumerate().filter(|(_, to)| *to != from) {
            let answers = &answers[&(from.clone(), to.clone())];
            let cell = &shown.cells[&(row, col)];
            assert_eq!(cell["state"], state(answers), "{from} → {to}");
            let lines = shown.lines((row, col)).join("\n");
            for (verdict, by) in answers {
                assert!(
                    lines.contains(&format!("{verdict} {by}")),
                    "{from} → {to}: {verdict} {by} not in {lines}"
                );
            }
        }
    }
}

const NAMES: [&str; 10] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"];

fn member(name: &str, role: &str, zone: &str) -> String {
    format!(
        "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {name}, labels: {{ role: \"{role}\", zone: \"{zone}\" }} }}\nspec: {{ publicKey: \"{name:A<42}A=\" }}\n"
    )
}

fn selector(rng: &mut Rng) -> String {
    random_policy::member_selector(rng, &NAMES)
}

fn ports(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => String::new(),
        1 => "\n    ports: [{ protocol: ICMP }]".into(),
        2 => "\n    ports: [{ protocol: TCP, port: 80, endPort: 443 }]".into(),
        3 => "\n    ports: [{ protocol: UDP, port: 53 }]".into(),
        _ => "\n    ports: [{ protocol: TCP, port: 22 }]".into(),
    }
}

/// Random members (labels from two roles and two zones) and policies,
/// drawn as groups: each member heads exactly one group, and every
/// ordered pair of members finds in its groups' cell what `check` says of
/// it (so every member pair is covered once, and grouping lost nothing).
#[test]
fn groups_cover_every_member_pair_once_as_check_decides() {
    let mut grouped_somewhere = false;
    for seed in 1..=4u64 {
        let dir = scratch(&format!("groups-{seed}"));
        let inputs = dir.join("inputs");
        std::fs::create_dir_all(&inputs).unwrap();
        let mut rng = Rng::new(seed);
        let members: String = NAMES
            .iter()
            .map(|n| {
                let (role, zone) = (*rng.pick(&["a", "b"]), *rng.pick(&["x", "y"]));
                member(n, role, zone)
            })
            .collect();
        std::fs::write(inputs.join("members.yaml"), members).unwrap();
        let policies: String = (0..=rng.below(4))
            .map(|p| random_policy::policy(&mut rng, p, selector, ports))
            .collect();
        std::fs::write(inputs.join("policies.yaml"), policies).unwrap();
        let names = compiled_members(&inputs, &dir);
        let flows = every_flow(&boundary_ports(&inputs));
        let answers = check_all(&inputs, &names, &flows, &dir);
        let shown = picture(
            &[
                "-f",
                inputs.to_str().unwrap(),
                "-o",
                "html",
                "--group",
                "groups",
            ],
            &dir.join("matrix.html"),
        );
        assert_eq!(shown.members(), names, "seed {seed}: members");
        grouped_somewhere |= shown.rows.len() < names.len();
        for a in &names {
            for b in names.iter().filter(|b| *b != a) {
                let at = (shown.row_of(a), shown.row_of(b));
                assert_eq!(
                    shown.cells[&at]["state"],
                    state(&answers[&(a.clone(), b.clone())]),
                    "seed {seed}: {a} → {b} (cell {at:?})"
                );
            }
            // A lone member with itself is the only `itself` cell.
            let r = shown.row_of(a);
            let itself = shown.cells[&(r, r)]["state"] == "itself";
            assert_eq!(itself, shown.rows[r].len() == 1, "seed {seed}: {a}");
        }
    }
    assert!(
        grouped_somewhere,
        "no seed gave a group of two members or more"
    );
}

/// `--group auto` draws members singly up to 40 and groups above.
#[test]
fn auto_grouping_starts_above_forty_members() {
    for (count, grouped) in [(40, false), (41, true)] {
        let dir = scratch(&format!("auto-{count}"));
        let members: String = (0..count)
            .map(|i| member(&format!("m{i:02}"), ["a", "b"][i % 2], "x"))
            .collect();
        std::fs::write(dir.join("members.yaml"), members).unwrap();
        std::fs::write(
            dir.join("policy.yaml"),
            "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: a-to-b }\nspec:\n  rules:\n  - action: Allow\n    from: [{ nodeSelector: { matchLabels: { role: a } } }]\n    to: [{ nodeSelector: { matchLabels: { role: b } } }]\n",
        )
        .unwrap();
        let shown = picture(
            &["-f", dir.to_str().unwrap(), "-o", "svg"],
            &dir.join("out.svg"),
        );
        assert_eq!(shown.members().len(), count);
        assert_eq!(shown.rows.len() < count, grouped, "{count} members");
    }
}

/// Quarantining web-2 (as the README's diff does): the outlined cells are
/// exactly the member pairs where `check` answers some flow differently
/// before and after, and each says what it was.
#[test]
fn the_quarantine_outlines_exactly_the_cells_that_change() {
    let dir = scratch("quarantine");
    let before = examples();
    let after = examples_with(&dir.join("after"), quarantine_web_2);
    let members = compiled_members(&after, &dir);
    let flows = every_flow(&boundary_ports(&before));
    let was = check_all(&before, &members, &flows, &dir);
    let now = check_all(&after, &members, &flows, &dir);
    assert_ne!(was, now, "web-2's labels moved in examples/mesh-nodes.yaml");
    for format in ["svg", "html"] {
        let shown = picture(
            &[
                "-f",
                after.to_str().unwrap(),
                "--before",
                before.to_str().unwrap(),
                "-o",
                format,
            ],
            &dir.join(format!("matrix.{format}")),
        );
        let mut outlined = 0;
        for (row, from) in members.iter().enumerate() {
            for (col, to) in members.iter().enumerate().filter(|(_, to)| *to != from) {
                let pair = (from.clone(), to.clone());
                let changes = was[&pair].iter().zip(&now[&pair]).any(|(b, a)| b.0 != a.0);
                let cell = &shown.cells[&(row, col)];
                assert_eq!(cell["marked"], changes, "{format} {from} → {to}");
                assert_eq!(cell["state"], state(&now[&pair]), "{format} {from} → {to}");
                let before_lines = shown
                    .lines((row, col))
                    .iter()
                    .filter(|l| l.starts_with("before: "))
                    .count();
                assert_eq!(before_lines > 0, changes, "{format} {from} → {to}");
                outlined += usize::from(changes);
            }
        }
        assert!(outlined > 0);
    }
}

#[test]
fn bad_input_exits_2_naming_it() {
    let cases: [(&[&str], &str); 4] = [
        (&["--ports", "70000"], "\"70000\""),
        (&["--ports", "ftp/21"], "\"ftp/21\""),
        (&["--ports", "tcp/0"], "\"tcp/0\""),
        (
            &["--before", "/nonexistent/meshguard"],
            "/nonexistent/meshguard",
        ),
    ];
    let examples = examples();
    for (extra, named) in cases {
        let args: Vec<&str> = [
            &["matrix", "-f", examples.to_str().unwrap(), "-o", "svg"][..],
            extra,
        ]
        .concat();
        let run = meshguard(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
        assert!(run.stdout.is_empty(), "{extra:?}: something was drawn");
    }
}
