//! The offline `meshguard` CLI, for GitOps pipelines and the demo.
//!
//! Contract (ARCHITECTURE.md, "The meshguard CLI"): inputs are the manifests
//! users apply (`-f`, repeatable, files or directories); exit 0 on success, 1
//! on a failed check or test, 2 on bad input, with a message naming the file,
//! object and field.
//!
//! ```text
//!  -f PATH… ─▶ load (files, YAML, List; validated as the API server would;
//!              Secrets to digests; Node labels)
//!                 └─▶ prepare: members (mesh IPs by ipam), diagnostics
//!                        ├─▶ validate: every object, the policies' tests
//!                        ├─▶ check: one flow or --flows, by meshguard_policy::evaluate
//!                        ├─▶ diff: two sides prepared, every flow that changes verdict,
//!                        │         by meshguard_policy::diff (words: wording)
//!                        ├─▶ matrix: member × member cells by meshguard_policy::matrix,
//!                        │           drawn as SVG or HTML by picture
//!                        └─▶ compile: one NodePolicy per member, by meshguard_policy::compile
//! ```
//!
//! The semantics are `meshguard-policy`'s; this crate only reads files and
//! prints. It links no Kubernetes client and no async runtime, so it starts
//! fast in a pipeline and the operator's dependencies never reach it.

mod args;
mod check;
mod check_request;
mod compile;
mod diff;
mod load;
mod matrix;
pub mod picture;
mod prepare;
mod validate;
mod wording;

use std::{io::Write, path::PathBuf};

use clap::{Parser, Subcommand};
use meshguard_crds::{Kind, manifests};

pub use args::{InputArgs, ProtocolArg, exit};
pub use load::{Checker, InputError, Loaded, documents, load, load_text};
pub use prepare::{Prepared, prepare, prepare_loaded, prepare_with};

#[derive(Parser, Debug)]
#[command(
    name = "meshguard",
    version,
    about = "Offline tools for meshguard policies: validate, check a flow, diff two versions, compile NodePolicies",
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
    /// Predict what a PolicyChain answers for one HTTP request, with the evaluator the agent runs.
    ///
    /// Exit 0 when the request would pass, 1 when it would be refused, 2 on bad input.
    CheckRequest(check_request::CheckRequestArgs),
    /// Every flow whose verdict changes between two sets of manifests, exactly.
    ///
    /// Members come from both sides (one present on a side only is added or
    /// removed: it has no flows where it is absent). Exit 0 when nothing
    /// changes, 1 when something does (with `--fail-on opened`: only when a
    /// flow opens), 2 on bad input.
    Diff(diff::DiffArgs),
    /// The member × member matrix as a picture (SVG or HTML, on stdout).
    ///
    /// Each cell is coloured by what the flows from its row to its column
    /// get (all allowed, some, none), with the deciding policy and rule on
    /// hover and, in SVG, in a numbered legend. With --before, cells whose
    /// flows change verdict are outlined. Exit 0, or 2 on bad input.
    Matrix(matrix::MatrixArgs),
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

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate { inputs } => validate::run(&inputs, out, err),
        Command::Check(args) => check::run(&args, out, err),
        Command::Diff(args) => diff::run(&args, out, err),
        Command::Matrix(args) => matrix::run(&args, out, err),
        Command::CheckRequest(args) => check_request::run(&args, out, err),
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
