//! `meshguard check`: one flow's verdict and the policy and rule that decided
//! it; `--explain` walks every rule consulted.

use std::io::Write;

use clap::{Args, ValueEnum};
use meshguard_crds::{Action, Protocol, Verdict};
use serde::Serialize;

use super::{InputArgs, ProtocolArg, exit, prepare};
use crate::{
    evaluate::{Flow, Outcome, evaluate},
    members::Endpoint,
    policy_tests::resolve,
};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Source: a member name or an IP address.
    #[arg(long, value_name = "MEMBER|IP")]
    pub from: String,
    /// Destination: a member name or an IP address.
    #[arg(long, value_name = "MEMBER|IP")]
    pub to: String,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The JSON answer, fields in the contract's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    verdict: Verdict,
    policy: Option<String>,
    /// The rule's name, or its index in the policy when it has none.
    rule: Option<serde_json::Value>,
    /// Whether both ends are WireGuard peers; null when either is not a member.
    peer_visible: Option<bool>,
}

pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    let protocol = Protocol::from(args.protocol);
    match (protocol.has_ports(), args.port) {
        (true, None) => {
            writeln!(err, "error: --port is required for {protocol:?}")?;
            return Ok(exit::BAD_INPUT);
        }
        (false, Some(_)) => {
            writeln!(err, "error: ICMP takes no --port")?;
            return Ok(exit::BAD_INPUT);
        }
        _ => {}
    }
    let prepared = match prepare(&args.inputs, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled = &prepared.compiled;
    let set = compiled.policy_set();
    let (Some(src), Some(dst)) = (
        resolve(compiled.members(), &args.from),
        resolve(compiled.members(), &args.to),
    ) else {
        let unknown = if resolve(compiled.members(), &args.from).is_none() {
            &args.from
        } else {
            &args.to
        };
        writeln!(
            err,
            "error: {unknown:?} is neither a member nor an IP address"
        )?;
        return Ok(exit::BAD_INPUT);
    };
    let decision = evaluate(
        set,
        &Flow {
            src,
            dst,
            protocol,
            port: args.port,
        },
    );
    let peer_visible = match (src, dst) {
        (Endpoint::Member(a), Endpoint::Member(b)) => Some(compiled.are_peers(&a.name, &b.name)),
        _ => None,
    };
    let answer = Answer {
        verdict: decision.verdict,
        policy: decision.rule.map(|r| set.policy_of(r).name.clone()),
        rule: decision.rule.map(|r| match &set.rules[r].name {
            Some(name) => serde_json::Value::from(name.clone()),
            None => serde_json::Value::from(set.rules[r].index),
        }),
        peer_visible,
    };

    let traffic = match args.port {
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
                decision.verdict, args.from, args.to
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
    Ok(if decision.verdict == Verdict::Allow {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Allow => "allowed",
        Action::Deny => "denied",
        Action::Log => "logged",
    }
}
