//! What the figures drivers (`examples/*_scale.rs`) share: the compiler's
//! inputs for members and policies alone, and the process's peak memory.

use meshguard_crds::MeshPolicy;
use meshguard_policy::{compile::Inputs, members::Member};

pub fn inputs<'a>(members: &'a [Member], policies: &'a [MeshPolicy]) -> Inputs<'a> {
    Inputs {
        members,
        policies,
        chains: &[],
        secrets: &[],
        config_maps: &[],
        listen_port: 51820,
    }
}

/// `VmHWM` of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
