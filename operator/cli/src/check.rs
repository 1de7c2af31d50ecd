//! `meshguard check`: one flow's verdict and the policy and rule that decided
//! it; `--explain` walks every rule consulted. `--flows` decides many flows
//! against one load of the inputs (a matrix costs one process, not one per
//! cell).

use std::{io::Write, path::PathBuf};

use clap::{Args, ValueEnum};
use meshguard_crds::{Action, Protocol, Verdict};
use meshguard_policy::{
    evaluate::{Flow, Outcome, evaluate},
    members::Endpoint,
    policy_tests::resolve,
};
use serde::Serialize;

use crate::{
    args::{InputArgs, Output, ProtocolArg, exit},
    prepare::prepare,
};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Source: a member name or an IP address.
    #[arg(long, value_name = "MEMBER|IP", required_unless_present = "flows")]
    pub from: Option<String>,
    /// Destination: a member name or an IP address.
    #[arg(long, value_name = "MEMBER|IP", required_unless_present = "flows")]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value = "TCP")]
    pub protocol: ProtocolArg,
    /// Destination port; required for TCP, UDP and SCTP.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: Output,
    /// Show every rule consulted, in order, with why it matched or not.
    #[arg(long)]
    pub explain: bool,
    /// Decide every flow in this file (`-`: standard input), one per line:
    /// `FROM TO PROTOCOL [PORT]`; `#` starts a comment. One answer per flow,
    /// in order (with `-o json`, one JSON object per line).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to", "protocol", "port"])]
    pub flows: Option<PathBuf>,
}

/// One flow to decide, as given; echoed in `--flows` JSON answers.
#[derive(Serialize)]
struct FlowArgs {
    /// `FILE:LINE` of a `--flows` line, for errors.
    #[serde(skip)]
    origin: Option<String>,
    from: String,
    to: String,
    protocol: Protocol,
    port: Option<u16>,
}

/// The JSON answer, fields in the contract's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    /// The flow, in `--flows` answers only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    flow: Option<&'a FlowArgs>,
    verdict: Verdict,
    policy: Option<String>,
    /// The rule's name, or its index in the policy when it has none.
    rule: Option<serde_json::Value>,
    /// Whether both ends are WireGuard peers; null when either is not a member.
    peer_visible: Option<bool>,
}

pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    let flows = match &args.flows {
        Some(path) => match read_flows(path) {
            Ok(flows) => flows,
            Err(message) => {
                writeln!(err, "error: {message}")?;
                return Ok(exit::BAD_INPUT);
            }
        },
        None => {
            let flow = FlowArgs {
                origin: None,
                // clap requires both unless --flows is given.
                from: args.from.clone().unwrap_or_default(),
                to: args.to.clone().unwrap_or_default(),
                protocol: Protocol::from(args.protocol),
                port: args.port,
            };
            if let Err(message) = port_fits(flow.protocol, flow.port) {
                writeln!(err, "error: {message}")?;
                return Ok(exit::BAD_INPUT);
            }
            vec![flow]
        }
    };
    let prepared = match prepare(&args.inputs, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled = &prepared.compiled;
    // Every name is resolved before any answer, so bad input prints nothing
    // on stdout.
    let mut ends = Vec::with_capacity(flows.len());
    for flow in &flows {
        let resolved = [&flow.from, &flow.to].map(|name| (name, resolve(compiled.members(), name)));
        match resolved {
            [(_, Some(src)), (_, Some(dst))] => ends.push((src, dst)),
            [(name, None), _] | [_, (name, None)] => {
                let at = flow
                    .origin
                    .as_ref()
                    .map(|o| format!("{o}: "))
                    .unwrap_or_default();
                writeln!(
                    err,
                    "error: {at}{name:?} is neither a member nor an IP address"
                )?;
                return Ok(exit::BAD_INPUT);
            }
        }
    }
    let mut all_allowed = true;
    for (flow, (src, dst)) in flows.iter().zip(ends) {
        all_allowed &= answer(args, compiled, flow, (src, dst), out, err)?;
    }
    Ok(if all_allowed { exit::OK } else { exit::FAILED })
}

/// `--port` must come with TCP, UDP and SCTP and never with ICMP.
fn port_fits(protocol: Protocol, port: Option<u16>) -> Result<(), String> {
    match (protocol.has_ports(), port) {
        (true, None) => Err(format!("--port is required for {protocol:?}")),
        (false, Some(_)) => Err("ICMP takes no --port".to_owned()),
        _ => Ok(()),
    }
}

/// The `--flows` file: `FROM TO PROTOCOL [PORT]` per line.
fn read_flows(path: &std::path::Path) -> Result<Vec<FlowArgs>, String> {
    let (name, text) = if path.as_os_str() == "-" {
        let text = std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("standard input: {e}"))?;
        ("standard input".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    let mut flows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if words.is_empty() {
            continue;
        }
        let at = || format!("{name}:{}", i + 1);
        let (from, to, protocol, port) = match words[..] {
            [from, to, protocol] => (from, to, protocol, None),
            [from, to, protocol, port] => (from, to, protocol, Some(port)),
            _ => {
                return Err(format!(
                    "{}: expected FROM TO PROTOCOL [PORT], found {line:?}",
                    at()
                ));
            }
        };
        let protocol = ProtocolArg::from_str(protocol, true)
            .map(Protocol::from)
            .map_err(|_| format!("{}: {protocol:?} is not TCP, UDP, SCTP or ICMP", at()))?;
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(p))
            .transpose()
            .map_err(|p| format!("{}: {p:?} is not a port (1-65535)", at()))?;
        port_fits(protocol, port).map_err(|m| format!("{}: {m}", at()))?;
        flows.push(FlowArgs {
            origin: Some(at()),
            from: from.to_owned(),
            to: to.to_owned(),
            protocol,
            port,
        });
    }
    Ok(flows)
}

/// Decides one flow between its resolved ends and writes its answer; true
/// when it is allowed.
fn answer(
    args: &CheckArgs,
    compiled: &meshguard_policy::compile::Compiled,
    flow: &FlowArgs,
    (src, dst): (Endpoint, Endpoint),
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<bool> {
    let set = compiled.policy_set();
    let protocol = flow.protocol;
    let decision = evaluate(
        set,
        &Flow {
            src,
            dst,
            protocol,
            port: flow.port,
        },
    );
    let peer_visible = match (src, dst) {
        (Endpoint::Member(a), Endpoint::Member(b)) => Some(compiled.are_peers(&a.name, &b.name)),
        _ => None,
    };
    let answer = Answer {
        flow: args.flows.as_ref().map(|_| flow),
        verdict: decision.verdict,
        policy: decision.rule.map(|r| set.policy_of(r).name.clone()),
        rule: decision.rule.map(|r| match &set.rules[r].name {
            Some(name) => serde_json::Value::from(name.clone()),
            None => serde_json::Value::from(set.rules[r].index),
        }),
        peer_visible,
    };

    let traffic = match flow.port {
        Some(port) => format!("{protocol:?}/{port}"),
        None => format!("{protocol:?}"),
    };
    if args.explain {
        // With `-o json` stdout carries the JSON alone; the walk goes to stderr.
        let out: &mut dyn Write = if args.output == Output::Json {
            &mut *err
        } else {
            &mut *out
        };
        writeln!(out, "flow {src} -> {dst} {traffic}")?;
        for step in &decision.steps {
            let rule = &set.rules[step.rule];
            let what = match step.outcome {
                Outcome::FromDoesNotMatch => "no match: from does not match the source".to_owned(),
                Outcome::ToDoesNotMatch => "no match: to does not match the destination".to_owned(),
                Outcome::PortsDoNotMatch => "no match: ports do not match the traffic".to_owned(),
                Outcome::Logged => "match: logged, evaluation goes on".to_owned(),
                Outcome::WouldHave(action) => format!(
                    "match: audit mode, would have {}, evaluation goes on",
                    past(action)
                ),
                Outcome::Decided => format!("match: {:?}, decides", rule.action),
            };
            let mode = if rule.audit { " (Audit)" } else { "" };
            writeln!(
                out,
                "  {:<40} {:<5} priority {:<4}{mode}  {what}",
                set.rule_id(step.rule),
                format!("{:?}", rule.action),
                set.policy_of(step.rule).priority
            )?;
        }
        if decision.rule.is_none() {
            writeln!(out, "  no rule decided: default deny")?;
        }
    }
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string(&answer)?)?,
        Output::Text => {
            let by = decision
                .rule
                .map(|r| set.rule_id(r))
                .unwrap_or_else(|| "the default deny (no rule matched)".to_owned());
            writeln!(
                out,
                "{:?}: {} -> {} {traffic}, decided by {by}",
                decision.verdict, flow.from, flow.to
            )?;
            for hit in decision.hits() {
                writeln!(
                    out,
                    "  also matched {} ({})",
                    set.rule_id(hit.rule),
                    if set.rules[hit.rule].audit {
                        "audit"
                    } else {
                        "log"
                    }
                )?;
            }
            if let Some(visible) = peer_visible {
                let answer = if visible {
                    "yes"
                } else {
                    "no: no traffic between them is allowed in either direction"
                };
                writeln!(out, "WireGuard peers: {answer}")?;
            }
        }
    }
    Ok(decision.verdict == Verdict::Allow)
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Allow => "allowed",
        Action::Deny => "denied",
        Action::Log => "logged",
    }
}
