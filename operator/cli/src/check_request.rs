//! `meshguard check-request`: what a PolicyChain answers for one HTTP
//! request, by the evaluator the agent runs (`meshguard_policy::l7`), so the
//! prediction and the node cannot disagree. Rate limits start full (the
//! answer to a first request); key sets the agent fetches from a `uri` are
//! not fetched here: such a step is an internal error, answered as the
//! chain's `failureMode` says.

use std::{
    collections::BTreeMap,
    io::Write,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use clap::{Args, ValueEnum};
use meshguard_policy::l7::{
    self, Chain, ChainState, Context, NoRemoteKeys, Outcome, Request, Unmatched,
};
use serde::Serialize;

use crate::{
    args::{InputArgs, Output, exit},
    prepare::prepare,
};

#[derive(Args, Debug)]
pub struct CheckRequestArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// The Envoy route name (`xds.route_name`) the request arrives on.
    #[arg(long, value_name = "ROUTE")]
    pub route: Option<String>,
    /// The chain by `<namespace>/<name>`, as the `x-meshguard-chain` gRPC
    /// metadata of a route names it; wins over `--route`.
    #[arg(long, value_name = "NS/NAME")]
    pub chain: Option<String>,
    /// Only the chains this member's agent runs (by their nodeSelector).
    #[arg(long, value_name = "MEMBER")]
    pub node: Option<String>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request path, query included.
    #[arg(long)]
    pub path: String,
    /// A request header, `NAME: VALUE`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The downstream address.
    #[arg(long, value_name = "IP")]
    pub source: Option<IpAddr>,
    /// What a request no chain serves gets, as the agent's flag of that name.
    #[arg(long, value_enum, default_value = "deny")]
    pub unmatched_route: UnmatchedArg,
    /// Evaluate at this time (seconds since the UNIX epoch) instead of now:
    /// token lifetimes depend on it.
    #[arg(long, value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Show every step, in order, with what it did.
    #[arg(long)]
    pub explain: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnmatchedArg {
    Deny,
    Allow,
}

/// The JSON answer, fields in the contract's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    status: u16,
    chain: Option<&'a str>,
    step: Option<String>,
    reason: Option<&'a str>,
    /// Headers set on the request towards the upstream.
    request_headers: &'a BTreeMap<String, String>,
    /// Headers of the response: the chain's, or the refusal's.
    response_headers: BTreeMap<String, String>,
    request_headers_removed: Vec<&'a str>,
    response_headers_removed: Vec<&'a str>,
    /// Under `mode: Audit`, what enforcement would have answered.
    audit: Option<Audit<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Audit<'a> {
    status: u16,
    step: Option<String>,
    reason: &'a str,
}

pub fn run(
    args: &CheckRequestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let mut request = Request {
        method: args.method.to_ascii_uppercase(),
        path: args.path.clone(),
        source: args.source,
        route: args.route.clone(),
        ..Request::default()
    };
    for header in &args.headers {
        match header.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                request.add_header(name.trim(), value.trim());
            }
            _ => {
                writeln!(err, "error: -H {header:?}: expected `NAME: VALUE`")?;
                return Ok(exit::BAD_INPUT);
            }
        }
    }
    if !request.path.starts_with('/') {
        writeln!(
            err,
            "error: --path {:?}: a path starts with /",
            request.path
        )?;
        return Ok(exit::BAD_INPUT);
    }
    let prepared = match prepare(&args.inputs, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled: Vec<_> = match &args.node {
        None => prepared.compiled.chains().cloned().collect(),
        Some(node) => match prepared.compiled.node_policy(node) {
            Some(spec) => spec.chains,
            None => {
                writeln!(err, "error: --node {node:?}: no such member")?;
                return Ok(exit::BAD_INPUT);
            }
        },
    };
    let mut chains = Vec::with_capacity(compiled.len());
    for chain in &compiled {
        match Chain::prepare(chain) {
            Ok(chain) => chains.push(chain),
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(exit::BAD_INPUT);
            }
        }
    }
    let now = match args.time {
        Some(seconds) => Duration::from_secs(seconds),
        None => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    };
    let unmatched = match args.unmatched_route {
        UnmatchedArg::Deny => Unmatched::Deny,
        UnmatchedArg::Allow => Unmatched::Allow,
    };
    let outcome = l7::answer(
        l7::select(&chains, args.chain.as_deref(), request.route.as_deref()),
        &request,
        unmatched,
        &mut Context {
            now,
            state: &ChainState::default(),
            remote_keys: &NoRemoteKeys,
            step_finished: None,
        },
    );
    print(args, &outcome, out)?;
    Ok(if outcome.refusal.is_none() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn print(args: &CheckRequestArgs, outcome: &Outcome, out: &mut dyn Write) -> anyhow::Result<()> {
    let refusal = outcome.refusal.as_ref();
    let mut response_headers = outcome.response_headers.set.clone();
    if let Some(r) = refusal {
        response_headers.extend(r.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let explain: Vec<String> = outcome
        .trace
        .iter()
        .map(|t| format!("{}: {}", t.step, t.result))
        .collect();
    let answer = Answer {
        status: outcome.status(),
        chain: outcome.chain.as_deref(),
        step: refusal.and_then(|r| r.step).map(|s| s.to_string()),
        reason: refusal.map(|r| r.reason.as_str()),
        request_headers: &outcome.request_headers.set,
        response_headers,
        request_headers_removed: outcome
            .request_headers
            .remove
            .iter()
            .map(String::as_str)
            .collect(),
        response_headers_removed: outcome
            .response_headers
            .remove
            .iter()
            .map(String::as_str)
            .collect(),
        audit: outcome.audited.as_ref().map(|a| Audit {
            status: a.status,
            step: a.step.map(|s| s.to_string()),
            reason: &a.reason,
        }),
        explain: args.explain.then_some(explain.clone()),
    };
    if args.output == Output::Json {
        writeln!(out, "{}", serde_json::to_string(&answer)?)?;
        return Ok(());
    }
    let chain = answer.chain.unwrap_or("(no chain)");
    match refusal {
        None => writeln!(out, "{} passed by {chain}", answer.status)?,
        Some(r) => writeln!(
            out,
            "{} refused by {chain}{}: {}",
            r.status,
            r.step.map(|s| format!(" step {s}")).unwrap_or_default(),
            r.reason
        )?,
    }
    if let Some(a) = &answer.audit {
        writeln!(
            out,
            "  audit: enforcing would answer {}{}: {}",
            a.status,
            a.step
                .as_ref()
                .map(|s| format!(" at step {s}"))
                .unwrap_or_default(),
            a.reason
        )?;
    }
    for (name, value) in answer.request_headers {
        writeln!(out, "  request header set: {name}: {value}")?;
    }
    for name in &answer.request_headers_removed {
        writeln!(out, "  request header removed: {name}")?;
    }
    for (name, value) in &answer.response_headers {
        writeln!(out, "  response header: {name}: {value}")?;
    }
    for name in &answer.response_headers_removed {
        writeln!(out, "  response header removed: {name}")?;
    }
    if args.explain {
        for line in explain {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}
