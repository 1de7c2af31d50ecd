//! `meshguard matrix`: the member × member matrix of a set of manifests as
//! a picture (SVG or HTML) — each cell coloured by what the row's flows to
//! the column get, the deciding rules on hover and in a legend; with
//! `--before`, the cells whose flows change are outlined. The cells are
//! `meshguard_policy::matrix`'s, the drawing is [`crate::picture`]'s.

use std::{io::Write, path::PathBuf};

use clap::{Args, ValueEnum};
use meshguard_crds::Protocol;
use meshguard_policy::{
    compile::Compiler,
    diff::End,
    matrix::{Cell, Matrix, Reach, Segment, Traffic, matrix},
};

use crate::{
    args::{InputArgs, exit},
    load::Checker,
    picture::{self, Heading, Picture, Shade, State},
    prepare::prepare_with,
    wording::{Names, decided, traffic},
};

/// Above this many members, `--group auto` draws groups.
const MEMBERS_DRAWN_SINGLY: usize = 40;
/// Lines of rules shown per cell before `+N more`.
const LINES_PER_CELL: usize = 12;

#[derive(Args, Debug)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Format,
    /// Only these flows, comma-separated: `443` (TCP), `tcp/443`,
    /// `udp/53`, `sctp/3868`, `icmp`. Without it a cell covers every
    /// protocol and port.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_flow)]
    pub ports: Vec<Flow>,
    /// The manifests before a change (a file or directory; repeat for
    /// more): the cells where some flow changes verdict are outlined.
    #[arg(long, value_name = "PATH")]
    pub before: Vec<PathBuf>,
    /// Rows and columns: every member, or groups of members every policy
    /// treats alike (named by the labels they share). `auto`: groups above
    /// 40 members.
    #[arg(long, value_enum, default_value = "auto")]
    pub group: Grouping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One SVG: the grid and a numbered legend of the deciding rules.
    Svg,
    /// One HTML page: the grid with the deciding rules on hover.
    Html,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Grouping {
    Auto,
    Members,
    Groups,
}

/// One flow of `--ports`: a protocol and its port (`None` for ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow(Protocol, Option<u16>);

fn parse_flow(text: &str) -> Result<Flow, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("icmp") {
        return Ok(Flow(Protocol::ICMP, None));
    }
    let (protocol, port) = match text.split_once('/') {
        Some((protocol, port)) => {
            let protocol = match protocol.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::TCP,
                "udp" => Protocol::UDP,
                "sctp" => Protocol::SCTP,
                _ => {
                    return Err(format!(
                        "{text:?}: the protocol is tcp, udp or sctp (or the whole item is icmp)"
                    ));
                }
            };
            (protocol, port)
        }
        None => (Protocol::TCP, text),
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Flow(protocol, Some(port))),
        _ => Err(format!(
            "{text:?}: a port is a number from 1 to 65535 (one port per item, e.g. 22,tcp/443,udp/53,icmp)"
        )),
    }
}

pub fn run(args: &MatrixArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    // One checker: what both versions hold alike is checked once.
    let checker = Checker::remembering();
    let after = match prepare_with(&args.inputs, Compiler::default(), &checker, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let before = if args.before.is_empty() {
        None
    } else {
        let inputs = InputArgs {
            files: args.before.clone(),
            mesh_cidr: args.inputs.mesh_cidr,
            listen_port: args.inputs.listen_port,
        };
        match prepare_with(&inputs, Compiler::default(), &checker, err)? {
            Ok(prepared) => Some(prepared),
            Err(code) => return Ok(code),
        }
    };
    let mut flows: Vec<(Protocol, Option<u16>)> = Vec::new();
    for &Flow(protocol, port) in &args.ports {
        if !flows.contains(&(protocol, port)) {
            flows.push((protocol, port));
        }
    }
    let traffic = if flows.is_empty() {
        Traffic::All
    } else {
        Traffic::Only(flows)
    };
    let found = matrix(
        &after.compiled,
        before.as_ref().map(|b| &b.compiled),
        &traffic,
    );
    let mut sets = Vec::new();
    sets.extend(before.as_ref().map(|b| &b.compiled));
    sets.push(&after.compiled);
    let names = Names::new(&sets);
    let members: usize = found.groups.iter().map(Vec::len).sum();
    let grouped = match args.group {
        Grouping::Auto => members > MEMBERS_DRAWN_SINGLY,
        Grouping::Members => false,
        Grouping::Groups => true,
    };
    let paths = |paths: &[PathBuf]| -> String {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut caption = vec![format!(
        "Each cell: the flows from its row to its column over {}.",
        describe(&traffic)
    )];
    if grouped {
        caption.push(format!(
            "Rows and columns are the {} groups of the {members} members that every policy treats alike.",
            found.groups.len()
        ));
    }
    let mark = before.is_some().then(|| {
        let mark = format!("some flow changes verdict against {}", paths(&args.before));
        caption.push(format!("Outlined: {mark}."));
        mark
    });
    let picture = draw(
        &found,
        &names,
        grouped,
        format!("meshguard matrix: {}", paths(&args.inputs.files)),
        caption.join("\n"),
        mark,
    );
    match args.output {
        Format::Svg => out.write_all(picture::svg(&picture).as_bytes())?,
        Format::Html => {
            let title = picture.title.clone();
            out.write_all(picture::html(&title, &[picture]).as_bytes())?
        }
    }
    Ok(exit::OK)
}

fn describe(traffic: &Traffic) -> String {
    match traffic {
        Traffic::All => "every protocol and port".to_owned(),
        Traffic::Only(flows) => flows
            .iter()
            .map(|&(protocol, port)| self::traffic(protocol, port.map(|p| (p, p))))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn draw(
    found: &Matrix,
    names: &Names,
    grouped: bool,
    title: String,
    caption: String,
    mark: Option<String>,
) -> Picture {
    // The axis, each entry with its group.
    let axis: Vec<(Heading, usize)> = if grouped {
        found
            .groups
            .iter()
            .enumerate()
            .map(|(g, members)| {
                let ends: Vec<End> = members.iter().cloned().map(End::Member).collect();
                let heading = Heading {
                    label: names.label(&ends),
                    members: members.clone(),
                };
                (heading, g)
            })
            .collect()
    } else {
        let mut singly: Vec<(Heading, usize)> = found
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, members)| {
                members.iter().map(move |m| {
                    let heading = Heading {
                        label: m.clone(),
                        members: vec![m.clone()],
                    };
                    (heading, g)
                })
            })
            .collect();
        singly.sort_by(|a, b| a.0.label.cmp(&b.0.label));
        singly
    };
    let mut cells = Vec::with_capacity(axis.len() * axis.len());
    for (row, (_, from)) in axis.iter().enumerate() {
        for (col, (_, to)) in axis.iter().enumerate() {
            let itself = !grouped && row == col;
            cells.push(match found.cell(*from, *to).filter(|_| !itself) {
                None => Shade {
                    state: State::Itself,
                    marked: false,
                    lines: Vec::new(),
                },
                Some(cell) => shade(cell, grouped && from == to),
            });
        }
    }
    Picture {
        title,
        caption,
        axis: axis.into_iter().map(|(heading, _)| heading).collect(),
        cells,
        mark,
    }
}

fn shade(cell: &Cell, within_group: bool) -> Shade {
    let mut lines = Vec::new();
    if within_group {
        lines.push("between different members of this group:".to_owned());
    }
    lines.extend(rules(cell.after.as_deref()));
    if cell.changed {
        lines.extend(
            rules(cell.before.as_deref())
                .into_iter()
                .map(|line| format!("before: {line}")),
        );
    }
    Shade {
        state: match cell.reach() {
            Reach::Allow => State::Allow,
            Reach::Partial => State::Partial,
            Reach::Deny => State::Deny,
        },
        marked: cell.changed,
        lines,
    }
}

/// What decides the flows of a cell: each run a rule decides, then the
/// default deny for the rest (or one line when one decision covers all).
fn rules(segments: Option<&[Segment]>) -> Vec<String> {
    let Some(segments) = segments else {
        return vec!["no flows: one end is not a member in this version".to_owned()];
    };
    let text = |s: &Segment| format!("{}: {}", traffic(s.protocol, s.ports), decided(&s.decided));
    if let Some(first) = segments.first()
        && segments.len() > 1
        && segments.iter().all(|s| s.decided == first.decided)
    {
        return vec![format!("all of it: {}", decided(&first.decided))];
    }
    let by_rule: Vec<&Segment> = segments.iter().filter(|s| s.decided.by.is_some()).collect();
    let rest = segments.iter().find(|s| s.decided.by.is_none());
    if by_rule.is_empty()
        && let Some(rest) = rest
        && segments.len() > 1
    {
        return vec![format!("all of it: {}", decided(&rest.decided))];
    }
    let mut lines: Vec<String> = by_rule
        .iter()
        .take(LINES_PER_CELL)
        .map(|s| text(s))
        .collect();
    if by_rule.len() > LINES_PER_CELL {
        lines.push(format!(
            "+{} more runs of ports",
            by_rule.len() - LINES_PER_CELL
        ));
    }
    match rest {
        Some(rest) if by_rule.is_empty() => lines.push(text(rest)),
        Some(rest) => lines.push(format!("everything else: {}", decided(&rest.decided))),
        None => {}
    }
    lines
}
