//! What every subcommand shares: the input flags, the protocol flag and the
//! exit codes.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use meshguard_crds::Protocol;
use meshguard_policy::addresses::{self, Prefix};

/// Exit codes shared by every subcommand.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
}

#[derive(Args, Debug)]
pub struct InputArgs {
    /// A manifest file or directory; repeat for more.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Where members without a mesh IP get one, in name order.
    #[arg(long, value_name = "CIDR", default_value = "100.96.0.0/12", value_parser = addresses::parse_mesh_cidr)]
    pub mesh_cidr: Prefix,
    /// The WireGuard port NodePolicies give every member.
    #[arg(long, value_name = "PORT", default_value_t = 51820)]
    pub listen_port: u16,
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

/// `-o`: for people, or one JSON object per answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}
