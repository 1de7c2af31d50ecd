//! `meshguard-agent` flags. Every flag has an environment fallback
//! (`MESHGUARD_<FLAG>`), for a DaemonSet's env and the downward API.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::{backend::Enforcement, l7::server::Listen};

#[derive(Parser, Debug)]
#[command(
    name = "meshguard-agent",
    version,
    about = "The meshguard node agent: WireGuard peers and packet filter from a NodePolicy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Enforce the node's NodePolicy and keep enforcing it.
    Run(Box<RunArgs>),
    /// Print the node's WireGuard public key (creating the private key when missing).
    Pubkey {
        #[arg(
            long,
            env = "MESHGUARD_PRIVATE_KEY",
            default_value = "/var/lib/meshguard/private.key"
        )]
        private_key: PathBuf,
    },
    /// Remove everything the agent created: peers, routes, chains, sets (and a kernel interface).
    Teardown(TeardownArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WireGuardMode {
    /// The kernel module when it is loaded, else the userspace daemon's socket.
    Auto,
    /// The kernel module, over netlink; the interface is created when missing.
    Kernel,
    /// A userspace daemon (boringtun, wireguard-go) started outside the agent.
    Uapi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// iptables + ipset.
    Iptables,
    /// TC programs on the mesh interface (the leak guard stays in iptables);
    /// the agent exits when they cannot load.
    Ebpf,
    /// eBPF where the programs load, else iptables (said in the status, the
    /// log and `meshguard_agent_backend`).
    Auto,
}

/// What a request no PolicyChain serves gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnmatchedRoute {
    /// 403, with the reason in `x-meshguard-reason`.
    Deny,
    /// Passed on to the upstream.
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The mesh interface.
    #[arg(long, env = "MESHGUARD_INTERFACE", default_value = "meshguard0", value_parser = interface_name)]
    pub interface: String,
    #[arg(long, env = "MESHGUARD_WIREGUARD", value_enum, default_value = "auto")]
    pub wireguard: WireGuardMode,
    /// The userspace daemon's socket (uapi mode).
    #[arg(
        long,
        env = "MESHGUARD_UAPI_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/wireguard/<interface>.sock"
    )]
    pub uapi_socket: String,
    /// Address ranges reached only through the mesh (routed, and blackholed behind it).
    #[arg(
        long = "mesh-cidr",
        env = "MESHGUARD_MESH_CIDR",
        value_delimiter = ',',
        default_value = "100.96.0.0/12"
    )]
    pub mesh_cidrs: Vec<IpNet>,
    #[arg(long, env = "MESHGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where a BPF filesystem is (mounted there when it is not): the eBPF
    /// backend pins its programs' links and maps under
    /// `<bpffs>/meshguard/<interface>/`, so they outlive the agent.
    #[arg(
        long,
        env = "MESHGUARD_BPFFS",
        value_name = "DIR",
        default_value = "/sys/fs/bpf"
    )]
    pub bpffs: PathBuf,
    /// A file the running agent keeps locked (flock), one per interface: a
    /// second agent for the interface waits until the first has stopped,
    /// and `teardown --wait-for-agent` until no agent runs.
    #[arg(
        long,
        env = "MESHGUARD_AGENT_LOCK",
        value_name = "PATH",
        default_value = "/var/lib/meshguard/<interface>.lock"
    )]
    pub agent_lock: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// This node's name: the NodePolicy it enforces.
    #[arg(long, env = "MESHGUARD_NODE")]
    pub node: String,
    /// Read the desired state from this NodePolicy file, re-read on change,
    /// instead of from the Kubernetes API (machines outside the cluster).
    #[arg(long, env = "MESHGUARD_STATE_FILE", value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Write the status here (file mode).
    #[arg(
        long,
        env = "MESHGUARD_STATUS_FILE",
        value_name = "PATH",
        requires = "state_file"
    )]
    pub status_file: Option<PathBuf>,
    /// This node's address for peers, registered in MeshNode/<node> as the
    /// endpoint with `--listen-port` (Kubernetes mode; the downward API's
    /// status.hostIP). Without it the member has no endpoint: it only
    /// connects out.
    #[arg(
        long,
        env = "MESHGUARD_NODE_IP",
        value_name = "IP",
        conflicts_with = "state_file"
    )]
    pub node_ip: Option<std::net::IpAddr>,
    /// The WireGuard port registered in MeshNode/<node> (Kubernetes mode).
    /// The interface listens on the NodePolicy's `interface.listenPort`.
    #[arg(
        long,
        env = "MESHGUARD_LISTEN_PORT",
        default_value_t = 51820,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub listen_port: u16,
    /// The WireGuard private key, created (mode 0600) when missing.
    #[arg(
        long,
        env = "MESHGUARD_PRIVATE_KEY",
        default_value = "/var/lib/meshguard/private.key"
    )]
    pub private_key: PathBuf,
    #[command(flatten)]
    pub common: Common,
    /// The packet filter that enforces the rules (NodePolicy status `backend`).
    #[arg(
        long,
        env = "MESHGUARD_BACKEND",
        value_enum,
        default_value = "iptables"
    )]
    pub backend: BackendKind,
    /// `audit` counts and logs every rule's would-be verdict and drops nothing.
    #[arg(
        long,
        env = "MESHGUARD_ENFORCEMENT",
        value_enum,
        default_value = "enforce"
    )]
    pub enforcement: Enforcement,
    #[arg(long, env = "MESHGUARD_MTU", default_value_t = 1420)]
    pub mtu: u16,
    /// Seconds between keepalives to each peer (0: off); keeps NAT mappings open.
    #[arg(long, env = "MESHGUARD_PERSISTENT_KEEPALIVE", default_value_t = 25)]
    pub persistent_keepalive: u16,
    /// In a cluster: how long to wait for the API server to answer a read
    /// before the request is abandoned and retried (`5m`). Keep it above
    /// 295 s, kube's watch idle timeout.
    #[arg(long, env = "MESHGUARD_API_READ_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub api_read_timeout: Duration,
    /// How often to look for drift and repair it (`30s`, `2m`).
    #[arg(long, env = "MESHGUARD_RESYNC_INTERVAL", default_value = "30s", value_parser = duration)]
    pub resync_interval: Duration,
    #[arg(long, env = "MESHGUARD_METRICS_LISTEN", default_value = "0.0.0.0:9471")]
    pub metrics_listen: SocketAddr,
    /// Serve this node's PolicyChains to Envoy over ext_proc (gRPC) here:
    /// `ADDRESS:PORT` or `unix:/PATH`. Off when unset: chains are then not
    /// enforced on this node.
    #[arg(long, env = "MESHGUARD_EXT_PROC_LISTEN", value_name = "ADDR")]
    pub ext_proc_listen: Option<Listen>,
    /// What an HTTP request that no chain serves gets.
    #[arg(
        long,
        env = "MESHGUARD_UNMATCHED_ROUTE",
        value_enum,
        default_value = "deny"
    )]
    pub unmatched_route: UnmatchedRoute,
    /// Certificate authorities (a PEM bundle) trusted for JWKS fetches, in
    /// addition to the system's; for an issuer with a private CA.
    #[arg(long, env = "MESHGUARD_JWKS_CA_FILE", value_name = "PEM")]
    pub jwks_ca_file: Option<PathBuf>,
    /// The longest a JWKS fetch may take (connect, TLS, answer).
    #[arg(long, env = "MESHGUARD_JWKS_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub jwks_timeout: Duration,
    /// How often a JWKS held is fetched again.
    #[arg(long, env = "MESHGUARD_JWKS_REFRESH", default_value = "5m", value_parser = duration)]
    pub jwks_refresh: Duration,
    /// The least time between two fetches of one JWKS asked for by tokens
    /// with an unknown `kid` (also the longest retry wait for a set not yet
    /// fetched).
    #[arg(long, env = "MESHGUARD_JWKS_REFETCH_INTERVAL", default_value = "30s", value_parser = duration)]
    pub jwks_refetch_interval: Duration,
    /// The netlink group Log and Audit rules send packets to (NFLOG), with
    /// the iptables backend; the eBPF backend logs them itself.
    #[arg(long, env = "MESHGUARD_NFLOG_GROUP", default_value_t = 100)]
    pub nflog_group: u16,
}

#[derive(Args, Debug)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub common: Common,
    /// First wait until no agent runs for the interface (`--agent-lock` is
    /// free), and keep it from starting until the teardown is done: the
    /// chart's uninstall hook starts this on every node, then stops the
    /// agents.
    #[arg(long)]
    pub wait_for_agent: bool,
    /// After the teardown, keep the lock until stopped (SIGTERM, Ctrl-C):
    /// an agent that starts meanwhile (restarted, or on a node just added)
    /// waits instead of enforcing again. The chart's hook holds until Helm
    /// has deleted the agents.
    #[arg(long, requires = "wait_for_agent")]
    pub hold: bool,
    /// Written once the teardown is done (the hook's readiness).
    #[arg(long, value_name = "PATH")]
    pub done_file: Option<PathBuf>,
}

impl RunArgs {
    /// `ip:port` of this node for MeshNode/<node>, IPv6 in brackets.
    pub fn endpoint(&self) -> Option<String> {
        self.node_ip
            .map(|ip| SocketAddr::new(ip, self.listen_port).to_string())
    }
}

impl Common {
    pub fn uapi_socket(&self) -> PathBuf {
        PathBuf::from(self.uapi_socket.replace("<interface>", &self.interface))
    }

    pub fn agent_lock(&self) -> PathBuf {
        PathBuf::from(self.agent_lock.replace("<interface>", &self.interface))
    }
}

/// Linux interface names hold at most 15 characters.
fn interface_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 15 || text.contains(['/', ' ']) {
        return Err(format!(
            "{text:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
        ));
    }
    Ok(text.to_owned())
}

/// `30`, `30s`, `2m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?} is not a duration such as 30s")),
    };
    if seconds == 0 {
        return Err("the interval must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["meshguard-agent", "run", "--node", "n1"]
            .iter()
            .chain(args)
            .copied();
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flag_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_select_kubernetes_mode_and_enforcement() {
        let args = run(&[]).unwrap();
        assert_eq!(args.state_file, None);
        assert_eq!(args.enforcement, Enforcement::Enforce);
        assert_eq!(args.resync_interval, Duration::from_secs(30));
        assert_eq!(
            args.api_read_timeout,
            meshguard_crds::api_client::DEFAULT_READ_TIMEOUT
        );
        assert_eq!(args.common.interface, "meshguard0");
        assert_eq!(
            args.common.uapi_socket(),
            PathBuf::from("/var/run/wireguard/meshguard0.sock")
        );
        assert_eq!(args.endpoint(), None);
    }

    #[test]
    fn status_file_needs_a_state_file() {
        let err = run(&["--status-file", "/tmp/s"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--state-file"), "{err}");
        run(&["--status-file", "/tmp/s", "--state-file", "/tmp/p"]).unwrap();
    }

    #[test]
    fn node_ip_belongs_to_kubernetes_mode() {
        let err = run(&["--node-ip", "10.0.0.1", "--state-file", "/tmp/p"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let args = run(&["--node-ip", "fd00::1", "--listen-port", "51000"]).unwrap();
        assert_eq!(args.endpoint().as_deref(), Some("[fd00::1]:51000"));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let err = run(&["--interface", "a-name-longer-than-15"]).unwrap_err();
        assert!(err.to_string().contains("not an interface name"), "{err}");
        let err = run(&["--listen-port", "0"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let err = run(&["--resync-interval", "0s"]).unwrap_err();
        assert!(err.to_string().contains("at least one second"), "{err}");
        let err = run(&["--mesh-cidr", "100.96.0.0/33"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(duration("5d").is_err());
        assert!(duration("m").is_err());
    }
}
