//! `meshguard diff`: who can talk to whom differently after a change —
//! every flow whose verdict changes, exactly (`meshguard_policy::diff`),
//! for a reviewer (text, markdown for a pull request comment) or a pipeline
//! (JSON, exit codes, `--fail-on opened`).

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::PathBuf,
};

use clap::{Args, ValueEnum};
use meshguard_crds::{Protocol, Verdict};
use meshguard_policy::{
    addresses::{self, Prefix},
    compile::Compiler,
    diff::{By, Decided, Diff, End, GroupChange, PeerChange, diff},
};
use serde::Serialize;

use crate::{
    args::{InputArgs, exit},
    load::Checker,
    prepare::prepare_with,
    wording::{self, Names, decided, traffic},
};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The manifests before the change: a file or directory; repeat for more.
    #[arg(long, value_name = "PATH", required = true)]
    pub before: Vec<PathBuf>,
    /// The manifests after the change: a file or directory; repeat for more.
    #[arg(long, value_name = "PATH", required = true)]
    pub after: Vec<PathBuf>,
    /// Where members without a mesh IP get one, in name order (both sides).
    #[arg(long, value_name = "CIDR", default_value = "100.96.0.0/12", value_parser = addresses::parse_mesh_cidr)]
    pub mesh_cidr: Prefix,
    /// The WireGuard port NodePolicies give every member.
    #[arg(long, value_name = "PORT", default_value_t = 51820)]
    pub listen_port: u16,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: DiffOutput,
    /// What makes the exit code 1: any change, or only a flow that opens
    /// (Deny → Allow), for pipelines that let tightening through unreviewed.
    #[arg(long, value_enum, default_value = "any")]
    pub fail_on: FailOn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffOutput {
    /// Grouped: ends that behave alike on both sides on one line.
    Text,
    /// Every change on its own, with a summary.
    Json,
    /// Grouped, as a table for a pull request comment.
    Markdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Any,
    Opened,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonChange<'a> {
    from: String,
    to: String,
    protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<String>,
    before: Verdict,
    after: Verdict,
    before_by: Option<&'a By>,
    after_by: Option<&'a By>,
    peer_change: Option<&'static str>,
}

#[derive(Serialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct Summary {
    flows_opened: usize,
    flows_closed: usize,
    peers_added: usize,
    peers_removed: usize,
}

#[derive(Serialize)]
struct Members<'a> {
    added: &'a [String],
    removed: &'a [String],
}

#[derive(Serialize)]
struct JsonDiff<'a> {
    changes: Vec<JsonChange<'a>>,
    summary: Summary,
    members: Members<'a>,
}

pub fn run(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    let side = |files: &Vec<PathBuf>| InputArgs {
        files: files.clone(),
        mesh_cidr: args.mesh_cidr,
        listen_port: args.listen_port,
    };
    // One checker: what both sides hold alike is checked once.
    let checker = Checker::remembering();
    let before = match prepare_with(&side(&args.before), Compiler::default(), &checker, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let after = match prepare_with(&side(&args.after), Compiler::default(), &checker, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let found = diff(&before.compiled, &after.compiled);
    let summary = summarize(&found);
    match args.output {
        DiffOutput::Json => {
            let report = JsonDiff {
                changes: found
                    .flows()
                    .map(|(from, to, change)| JsonChange {
                        from: from.to_string(),
                        to: to.to_string(),
                        protocol: change.protocol,
                        ports: wording::ports(change.ports),
                        before: change.before.verdict,
                        after: change.after.verdict,
                        before_by: change.before.by.as_ref(),
                        after_by: change.after.by.as_ref(),
                        peer_change: found.peer_change(from, to).map(peer_text),
                    })
                    .collect(),
                summary,
                members: Members {
                    added: &found.added,
                    removed: &found.removed,
                },
            };
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        DiffOutput::Text | DiffOutput::Markdown => {
            let names = Names::new(&[&before.compiled, &after.compiled]);
            let report = Report {
                found: &found,
                rows: ordered(&found, &names),
                summary,
            };
            if args.output == DiffOutput::Text {
                report.text(out)?;
            } else {
                report.markdown(out)?;
            }
        }
    }
    let failed = match args.fail_on {
        FailOn::Any => summary.flows_opened + summary.flows_closed > 0,
        FailOn::Opened => summary.flows_opened > 0,
    };
    Ok(if failed { exit::FAILED } else { exit::OK })
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "{} flows opened, {} closed; {} peer pairs added, {} removed",
            self.flows_opened, self.flows_closed, self.peers_added, self.peers_removed
        )
    }
}

fn summarize(found: &Diff) -> Summary {
    let mut summary = Summary::default();
    for (_, _, change) in found.flows() {
        match change.after.verdict {
            Verdict::Allow => summary.flows_opened += 1,
            Verdict::Deny => summary.flows_closed += 1,
        }
    }
    for (_, change) in found.peer_changes() {
        match change {
            PeerChange::Added => summary.peers_added += 1,
            PeerChange::Removed => summary.peers_removed += 1,
        }
    }
    summary
}

fn peer_text(change: PeerChange) -> &'static str {
    match change {
        PeerChange::Added => "added",
        PeerChange::Removed => "removed",
    }
}

/// The changes for people: groups whose change is the same (traffic,
/// before, after) merged, first by source then by destination, labelled,
/// in a stable order.
fn ordered<'a>(found: &'a Diff, names: &Names) -> Vec<(String, String, &'a GroupChange)> {
    type Same<'a> = (u8, Option<(u16, u16)>, &'a Decided, &'a Decided);
    /// Groups on one side of merged changes, and one of the changes.
    type Merged<'a> = (Vec<usize>, &'a GroupChange);
    // One number per distinct change, so that the maps below sort.
    let mut kinds: HashMap<Same<'a>, usize> = HashMap::new();
    // (`diff` leaves out a lone member with itself: every change holds flows.)
    let mut sources: BTreeMap<(usize, usize), Merged<'a>> = BTreeMap::new();
    for c in &found.changes {
        let next = kinds.len();
        let kind = *kinds
            .entry((c.protocol as u8, c.ports, &c.before, &c.after))
            .or_insert(next);
        sources
            .entry((c.to, kind))
            .or_insert((Vec::new(), c))
            .0
            .push(c.from);
    }
    let mut targets: BTreeMap<(Vec<usize>, usize), Merged<'a>> = BTreeMap::new();
    for ((to, kind), (mut from, c)) in sources {
        from.sort_unstable();
        targets
            .entry((from, kind))
            .or_insert((Vec::new(), c))
            .0
            .push(to);
    }
    let ends = |groups: &[usize]| -> Vec<End> {
        let mut ends: Vec<End> = groups
            .iter()
            .flat_map(|&g| found.groups[g].iter().cloned())
            .collect();
        ends.sort();
        ends
    };
    let mut rows: Vec<(String, String, &GroupChange)> = targets
        .into_iter()
        .map(|((from, _), (to, c))| (names.label(&ends(&from)), names.label(&ends(&to)), c))
        .collect();
    rows.sort_by(|a, b| {
        (&a.0, &a.1, a.2.protocol as u8, a.2.ports).cmp(&(
            &b.0,
            &b.1,
            b.2.protocol as u8,
            b.2.ports,
        ))
    });
    rows
}

/// What text and markdown print: the diff, its rows for people, its summary.
struct Report<'a> {
    found: &'a Diff,
    rows: Vec<(String, String, &'a GroupChange)>,
    summary: Summary,
}

impl Report<'_> {
    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for name in &self.found.added {
            writeln!(out, "member added: {name}")?;
        }
        for name in &self.found.removed {
            writeln!(out, "member removed: {name}")?;
        }
        if self.rows.is_empty() {
            writeln!(out, "no flow changes verdict")?;
        }
        for (from, to, change) in &self.rows {
            writeln!(
                out,
                "{from} → {to} {}: {} → {}",
                traffic(change.protocol, change.ports),
                decided(&change.before),
                decided(&change.after)
            )?;
        }
        for (a, b, change) in peer_lines(self.found) {
            writeln!(out, "peers {change}: {a} ↔ {b}")?;
        }
        writeln!(out, "{}", self.summary.line())?;
        Ok(())
    }

    fn markdown(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let found = self.found;
        writeln!(out, "### meshguard diff\n")?;
        writeln!(out, "{}.\n", self.summary.line())?;
        if !found.added.is_empty() || !found.removed.is_empty() {
            writeln!(
                out,
                "Members added: {}. Members removed: {}.\n",
                list(&found.added),
                list(&found.removed)
            )?;
        }
        if self.rows.is_empty() {
            writeln!(out, "No flow changes verdict.")?;
            return Ok(());
        }
        writeln!(out, "| From | To | Traffic | Before | After |")?;
        writeln!(out, "|---|---|---|---|---|")?;
        for (from, to, change) in &self.rows {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(from),
                cell(to),
                traffic(change.protocol, change.ports),
                cell(&decided(&change.before)),
                cell(&decided(&change.after))
            )?;
        }
        let peers = peer_lines(found);
        if !peers.is_empty() {
            writeln!(out)?;
            for (a, b, change) in peers {
                writeln!(out, "- peers {change}: `{a}` ↔ `{b}`")?;
            }
        }
        Ok(())
    }
}

/// Member pairs whose peering changes, sorted: `(a, b, "added"|"removed")`.
fn peer_lines(found: &Diff) -> Vec<(&str, &str, &'static str)> {
    let mut peers: Vec<(&str, &str, &'static str)> = found
        .peer_changes()
        .map(|((a, b), change)| (a.as_str(), b.as_str(), peer_text(*change)))
        .collect();
    peers.sort();
    peers
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Markdown table cells cannot hold `|`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
