//! The offline `meshguard` CLI, for GitOps pipelines and the demo.
//!
//! Contract (ARCHITECTURE.md, "The meshguard CLI"): exit 0 on success, 1 on a
//! failed check or test, 2 on bad input.

use std::io::Write;

use clap::{Parser, Subcommand};
use meshguard_crds::{Kind, manifests};

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
    about = "Offline tools for meshguard policies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions of the meshguard.io API as one YAML stream.
    Crds,
}

/// Runs a parsed command, writing to `out`; returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
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
