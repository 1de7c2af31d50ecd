//! `meshguard-operator` flags. Every flag has an environment fallback
//! (`MESHGUARD_<FLAG>`), for the Deployment's env and the downward API.

use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use meshguard_policy::addresses::Prefix;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "meshguard-operator",
    version,
    about = "The meshguard operator: compiles MeshPolicies, PolicyChains and MeshNodes into one NodePolicy per node",
    args_conflicts_with_subcommands = true
)]
pub struct Flags {
    /// Without one, the operator runs.
    #[command(subcommand)]
    pub command: Option<OperatorCommand>,
    /// Mesh IPs are allocated from here (MeshNodes without spec.meshIP).
    #[arg(long, env = "MESHGUARD_MESH_CIDR", default_value = "100.96.0.0/12", value_parser = meshguard_policy::addresses::parse_mesh_cidr)]
    pub mesh_cidr: Prefix,
    /// The WireGuard port NodePolicies give every member's interface.
    #[arg(
        long,
        env = "MESHGUARD_LISTEN_PORT",
        default_value_t = 51820,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub listen_port: u16,
    /// Also list every other member in each NodePolicy's `auditPeers`, for
    /// agents run with `--enforcement audit` (a first rollout on a live cluster).
    #[arg(long, env = "MESHGUARD_AUDIT_PEERS", default_value_t = false, action = ArgAction::Set)]
    pub audit_peers: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "MESHGUARD_METRICS_LISTEN", default_value = "0.0.0.0:9470")]
    pub metrics_listen: SocketAddr,
    /// Elect a leader among replicas (off: this process always acts; run one replica only).
    #[arg(long, env = "MESHGUARD_LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (usually the operator's own).
    #[arg(
        long,
        env = "MESHGUARD_LEASE_NAMESPACE",
        default_value = "meshguard-system"
    )]
    pub lease_namespace: String,
    #[arg(
        long,
        env = "MESHGUARD_LEASE_NAME",
        default_value = "meshguard-operator"
    )]
    pub lease_name: String,
    /// How long a lease lasts without renewal: a standby takes over within this.
    #[arg(long, env = "MESHGUARD_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease and in Events (the pod name; default: the host name).
    #[arg(long, env = "MESHGUARD_IDENTITY")]
    pub identity: Option<String>,
    /// How long to wait for the API server to answer a read before the
    /// request is abandoned and retried (`5m`). Keep it above 295 s, kube's
    /// watch idle timeout, or quiet watches reconnect at this pace.
    #[arg(long, env = "MESHGUARD_API_READ_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub api_read_timeout: Duration,
    /// Quiet time that ends a burst of changes before one recompute (`200ms`, `1s`).
    #[arg(long, env = "MESHGUARD_DEBOUNCE", default_value = "200ms", value_parser = duration)]
    pub debounce: Duration,
    /// Log lines as text for people or JSON for collectors (level: RUST_LOG, default info).
    #[arg(long, env = "MESHGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Stop the agents and remove what they made on every node: the chart's
    /// pre-delete hook (a Job), beside its teardown DaemonSet.
    Uninstall(UninstallArgs),
}

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// The release's namespace.
    #[arg(long, env = "MESHGUARD_NAMESPACE")]
    pub namespace: String,
    /// The agents' DaemonSet, deleted first.
    #[arg(long)]
    pub agent_daemonset: String,
    /// The teardown DaemonSet, waited for until every pod is Ready.
    #[arg(long)]
    pub teardown_daemonset: String,
    /// How long to wait for every node (`4m`): keep it below Helm's
    /// `--timeout` so that this Job says which nodes are not done.
    #[arg(long, default_value = "4m", value_parser = duration)]
    pub timeout: Duration,
}

impl Flags {
    pub fn lease_settings(&self) -> crate::controller::leader::LeaseSettings {
        crate::controller::leader::LeaseSettings {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: self.identity(),
            duration: self.lease_duration,
        }
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "meshguard-operator".into())
        })
    }
}

/// `250ms`, `15s`, `2m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 15s or 200ms"))?;
    let value = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{text:?} is not a duration such as 15s or 200ms")),
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_parse_with_defaults_and_refuse_bad_values() {
        Flags::command().debug_assert();
        let flags = Flags::try_parse_from(["meshguard-operator"]).unwrap();
        assert_eq!(flags.mesh_cidr.to_string(), "100.96.0.0/12");
        assert!(flags.leader_elect);
        assert_eq!(flags.debounce, Duration::from_millis(200));
        assert_eq!(
            flags.api_read_timeout,
            meshguard_crds::api_client::DEFAULT_READ_TIMEOUT
        );
        let flags =
            Flags::try_parse_from(["meshguard-operator", "--leader-elect", "false"]).unwrap();
        assert!(!flags.leader_elect);
        let err = Flags::try_parse_from(["meshguard-operator", "--mesh-cidr", "10.0.0.0/33"])
            .unwrap_err();
        assert!(err.to_string().contains("is not a CIDR"), "{err}");
        assert!(Flags::try_parse_from(["meshguard-operator", "--debounce", "5d"]).is_err());
        assert!(flags.command.is_none());
        let flags = Flags::try_parse_from([
            "meshguard-operator",
            "uninstall",
            "--namespace",
            "net",
            "--agent-daemonset",
            "mg-agent",
            "--teardown-daemonset",
            "mg-teardown",
        ])
        .unwrap();
        let Some(OperatorCommand::Uninstall(args)) = flags.command else {
            panic!("{flags:?}");
        };
        assert_eq!(args.timeout, Duration::from_secs(240));
        assert!(
            Flags::try_parse_from(["meshguard-operator", "--leader-elect", "false", "uninstall"])
                .is_err(),
            "the operator's flags are not the uninstall's"
        );
    }
}
