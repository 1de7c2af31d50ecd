//! The offline `meshguard` CLI, for GitOps pipelines and the demo.
//!
//! Contract (ARCHITECTURE.md, "The meshguard CLI"): inputs are the manifests
//! users apply (`-f`, repeatable, files or directories); exit 0 on success, 1
//! on a failed check or test, 2 on bad input, with a message naming the file,
//! object and field.

mod check;
mod compile;
mod load;
mod validate;

use std::{io::Write, net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use meshguard_crds::{Kind, Protocol, manifests};

use crate::{
    addresses::Prefix,
    compile::{Compiled, Compiler, Inputs as CompileInputs},
    diagnostics::{Diagnostic, Severity},
    ipam,
    members::Member,
};
pub use load::{InputError, Loaded, load};

/// Exit codes shared by every subcommand.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
}

#[derive(Parser, Debug)]
#[command(
    name = "meshguard",
    version,
    about = "Offline tools for meshguard policies: validate, check a flow, compile NodePolicies",
    long_about = "Offline tools for meshguard policies.\n\nInputs are the manifests you apply: MeshPolicy, PolicyChain, MeshNode, Secret and ConfigMap documents in files or directories (recursive *.yaml, *.yml, *.json; multi-document; kind: List). Other kinds are ignored.\n\nExit codes: 0 success, 1 a failed check or test, 2 bad input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check every object (schema, CEL rules, meshguard's checks) and run the policies' tests.
    ///
    /// Exit 0 when everything is valid and every test passes, 1 when a test fails, 2 on bad input.
    Validate {
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// Decide one flow and say which policy and rule decided it.
    ///
    /// Exit 0 when the flow is allowed, 1 when it is denied, 2 on bad input.
    Check(check::CheckArgs),
    /// Write one NodePolicy per member to <OUT>/<member>.yaml.
    ///
    /// Nothing is written unless every input is valid.
    Compile {
        #[command(flatten)]
        inputs: InputArgs,
        /// Directory for the NodePolicies (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also list every other member in `auditPeers`, for agents run with
        /// `--enforcement audit` (they install those as peers too).
        #[arg(long)]
        audit_peers: bool,
    },
    /// Print the CustomResourceDefinitions of the meshguard.io API as one YAML stream.
    Crds,
}

#[derive(Args, Debug)]
pub struct InputArgs {
    /// A manifest file or directory; repeat for more.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Where members without a mesh IP get one, in name order.
    #[arg(long, value_name = "CIDR", default_value = "100.96.0.0/12", value_parser = parse_cidr)]
    pub mesh_cidr: Prefix,
    /// The WireGuard port NodePolicies give every member.
    #[arg(long, value_name = "PORT", default_value_t = 51820)]
    pub listen_port: u16,
}

pub(crate) fn parse_cidr(text: &str) -> Result<Prefix, String> {
    if !meshguard_crds::validation::semantic::is_strict_cidr(text) {
        return Err(format!("{text:?} is not a CIDR such as 100.96.0.0/12"));
    }
    text.parse()
        .map_err(|e: crate::addresses::PrefixError| e.to_string())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    #[value(name = "TCP", alias = "tcp")]
    Tcp,
    #[value(name = "UDP", alias = "udp")]
    Udp,
    #[value(name = "SCTP", alias = "sctp")]
    Sctp,
    #[value(name = "ICMP", alias = "icmp")]
    Icmp,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Tcp => Protocol::TCP,
            ProtocolArg::Udp => Protocol::UDP,
            ProtocolArg::Sctp => Protocol::SCTP,
            ProtocolArg::Icmp => Protocol::ICMP,
        }
    }
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate { inputs } => validate::run(&inputs, out, err),
        Command::Check(args) => check::run(&args, out, err),
        Command::Compile {
            inputs,
            out: dir,
            audit_peers,
        } => compile::run(&inputs, &dir, audit_peers, out, err),
        Command::Crds => {
            for (i, kind) in Kind::ALL.into_iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(manifests::render(kind)?.as_bytes())?;
            }
            Ok(exit::OK)
        }
    }
}

/// Inputs read, members resolved, everything compiled.
pub struct Prepared {
    pub loaded: Loaded,
    pub compiled: Compiled,
}

/// Loads and compiles, printing bad input and warnings to `err`. `Err` holds
/// the exit code when the input was bad.
pub fn prepare(args: &InputArgs, err: &mut dyn Write) -> anyhow::Result<Result<Prepared, u8>> {
    prepare_with(args, Compiler::default(), err)
}

/// [`prepare`] with a configured compiler.
pub fn prepare_with(
    args: &InputArgs,
    mut compiler: Compiler,
    err: &mut dyn Write,
) -> anyhow::Result<Result<Prepared, u8>> {
    let loaded = match load(&args.files) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    let members = match members(&loaded, args.mesh_cidr) {
        Ok(members) => members,
        Err(errors) => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    let compiled = compiler.compile(&CompileInputs {
        members: &members,
        policies: &loaded.policies,
        chains: &loaded.chains,
        secrets: &loaded.secrets,
        config_maps: &loaded.config_maps,
        listen_port: args.listen_port,
    });
    let mut failed = false;
    for d in compiled.diagnostics() {
        writeln!(err, "{}", located(&loaded, d))?;
        failed |= d.severity == Severity::Error;
    }
    if failed {
        return Ok(Err(exit::BAD_INPUT));
    }
    Ok(Ok(Prepared { loaded, compiled }))
}

/// A diagnostic with the file its object came from.
fn located(loaded: &Loaded, d: &Diagnostic) -> String {
    let severity = match d.severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    let file = loaded
        .origin(d.object.kind, d.object.namespace.as_deref(), &d.object.name)
        .map(|f| format!("{}: ", f.display()))
        .unwrap_or_default();
    let object = format!("{}/{}", d.object.kind, d.object.name);
    match &d.field {
        Some(field) => format!("{severity}: {file}{object}: {field}: {}", d.message),
        None => format!("{severity}: {file}{object}: {}", d.message),
    }
}

/// Members from the MeshNodes: mesh IP from `spec.meshIP`, else `status.meshIP`
/// (a `kubectl get -o yaml` export), else allocated from the mesh CIDR.
fn members(loaded: &Loaded, cidr: Prefix) -> Result<Vec<Member>, Vec<InputError>> {
    let name_of = |n: &meshguard_crds::MeshNode| n.metadata.name.clone().unwrap_or_default();
    let error = |name: &str, field: &str, message: String| InputError {
        file: loaded
            .origin("MeshNode", None, name)
            .map(PathBuf::from)
            .unwrap_or_default(),
        object: Some(format!("MeshNode/{name}")),
        field: Some(field.to_owned()),
        message,
    };
    let fixed_field = |n: &meshguard_crds::MeshNode| {
        if n.spec.mesh_ip.is_some() {
            "spec.meshIP"
        } else {
            "status.meshIP"
        }
    };
    let fixed: Vec<(String, Option<IpAddr>)> = loaded
        .nodes
        .iter()
        .map(|n| {
            let ip = n
                .spec
                .mesh_ip
                .as_deref()
                .or(n.status.as_ref().and_then(|s| s.mesh_ip.as_deref()));
            (name_of(n), ip.and_then(|ip| ip.parse().ok()))
        })
        .collect();
    let assigned = ipam::assign(&fixed, cidr).map_err(|e| {
        vec![match e {
            ipam::IpamError::Conflict { ip, first, second } => {
                let node = loaded.nodes.iter().find(|n| name_of(n) == second);
                let first_file = loaded
                    .origin("MeshNode", None, &first)
                    .map(|f| f.display().to_string())
                    .unwrap_or_default();
                error(
                    &second,
                    node.map_or("spec.meshIP", fixed_field),
                    format!("mesh IP {ip} is already MeshNode/{first}'s ({first_file})"),
                )
            }
            ipam::IpamError::Exhausted { cidr, member } => error(
                &member,
                "spec.meshIP",
                format!("no free address left in the mesh CIDR {cidr}; give a larger --mesh-cidr"),
            ),
        }]
    })?;
    let mut errors = Vec::new();
    let mut members = Vec::new();
    for n in &loaded.nodes {
        let name = name_of(n);
        let mut allowed_ips = Vec::new();
        for (i, text) in n.spec.allowed_ips.iter().flatten().enumerate() {
            match text.parse::<Prefix>() {
                Ok(prefix) => allowed_ips.push(prefix),
                Err(e) => errors.push(error(
                    &name,
                    &format!("spec.allowedIPs[{i}]"),
                    e.to_string(),
                )),
            }
        }
        members.push(Member {
            mesh_ip: assigned[&name],
            labels: crate::members::labels(
                loaded.node_labels.get(&name),
                n.metadata.labels.as_ref(),
            ),
            public_key: n.spec.public_key.clone(),
            endpoint: n.spec.endpoint.clone(),
            allowed_ips,
            name,
        });
    }
    if errors.is_empty() {
        Ok(members)
    } else {
        Err(errors)
    }
}
