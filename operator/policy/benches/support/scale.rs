//! A synthetic mesh at the scale the compiler must handle: 5,000 members,
//! 1,000 policies with 4,000 rules, labels over 100 values. Deterministic, so
//! every run measures the same inputs.
//!
//! Members carry `app` (80 values), `tier` (10, following the app) and `zone`
//! (10). Rules mostly connect apps, some tiers, some app-in-zone, some named
//! members, some CIDRs; a few reach every member (monitoring-style), which
//! gives the largest NodePolicies. [`Shape`] picks how names and CIDRs are used.

use base64::{Engine, engine::general_purpose::STANDARD};
use meshguard_crds::{
    Action, CidrBlock, LabelSelector, MeshPolicy, MeshPolicySpec, PeerSelector, PolicyMode,
    PolicyRule, PortRule, Protocol,
};
use meshguard_policy::{addresses::Prefix, members::Member};
pub use meshguard_testkit::rng::Rng;

pub const MEMBERS: usize = 5_000;
pub const POLICIES: usize = 1_000;
pub const RULES_PER_POLICY: usize = 4;

pub fn members() -> Vec<Member> {
    let mut rng = Rng::new(7);
    (0..MEMBERS)
        .map(|i| {
            let app = rng.below(80);
            let labels = [
                ("app".to_owned(), format!("app-{app:02}")),
                ("tier".to_owned(), format!("tier-{}", app % 10)),
                ("zone".to_owned(), format!("zone-{}", i % 10)),
            ];
            let mut key = [0u8; 32];
            for (j, b) in key.iter_mut().enumerate() {
                *b = (rng.next_u64() >> (j % 8)) as u8;
            }
            Member {
                name: format!("node-{i:04}"),
                labels: labels.into_iter().collect(),
                mesh_ip: format!("100.96.{}.{}", i / 250, i % 250 + 1)
                    .parse()
                    .expect("valid address"),
                public_key: STANDARD.encode(key),
                endpoint: Some(format!(
                    "10.{}.{}.{}:51820",
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                )),
                allowed_ips: Vec::<Prefix>::new(),
            }
        })
        .collect()
}

/// [`members`], the first `routers` of them each routing `per_member`
/// single addresses of 10.128.0.0/9 (pod or VM addresses behind a node):
/// many routed prefixes, each a boundary the compiler must respect.
#[allow(dead_code)] // the compile bench's; the examples sharing this file leave it
pub fn with_routes(routers: usize, per_member: usize) -> Vec<Member> {
    let mut out = members();
    for (i, member) in out.iter_mut().take(routers).enumerate() {
        member.allowed_ips = (0..per_member)
            .map(|j| {
                let n = (i * per_member + j) as u32;
                Prefix::host(std::net::Ipv4Addr::from(0x0a80_0000 | n).into())
            })
            .collect();
    }
    out
}

fn labels(pairs: &[(&str, String)]) -> PeerSelector {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    PeerSelector {
        node_selector: Some(LabelSelector {
            match_labels: Some(map),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

/// How the rules pick members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Application policies by labels (app, tier, zone, app in zone), named
    /// members from a pool of 20 infrastructure nodes and CIDRs outside the
    /// mesh; the mesh-wide rules (ICMP, monitoring, DNS, SSH from bastions,
    /// log shipping) in five platform policies, as a platform team writes them.
    Typical,
    /// Mesh-wide selectors (`{}`) in random rules, CIDR selectors over slices
    /// of the member range and names of random members: they leave almost
    /// every member a class of its own and every list long, the compiler's
    /// worst case.
    Stress,
}

fn selector(rng: &mut Rng, shape: Shape) -> PeerSelector {
    let app = |rng: &mut Rng| format!("app-{:02}", rng.below(80));
    let names = |rng: &mut Rng, pool: usize| PeerSelector {
        nodes: Some(
            (0..1 + rng.below(3))
                .map(|_| format!("node-{:04}", rng.below(pool)))
                .collect(),
        ),
        ..Default::default()
    };
    let cidr = |block: String, except: Option<Vec<String>>| PeerSelector {
        cidrs: Some(vec![CidrBlock {
            cidr: block,
            except,
        }]),
        ..Default::default()
    };
    match (shape, rng.below(100)) {
        (_, 0..62) => labels(&[("app", app(rng))]),
        (_, 62..77) => labels(&[("tier", format!("tier-{}", rng.below(10)))]),
        (_, 77..85) => labels(&[
            ("app", app(rng)),
            ("zone", format!("zone-{}", rng.below(10))),
        ]),
        (_, 85..90) => labels(&[("zone", format!("zone-{}", rng.below(10)))]),
        (Shape::Typical, 90..95) => names(rng, 20),
        (Shape::Typical, _) => cidr(format!("10.{}.0.0/16", rng.below(200)), None),
        (Shape::Stress, 90..95) => names(rng, MEMBERS),
        (Shape::Stress, 95..98) => {
            let third = rng.below(20);
            cidr(
                format!("100.96.{third}.0/24"),
                Some(vec![format!("100.96.{third}.0/28")]),
            )
        }
        _ => PeerSelector {
            node_selector: Some(LabelSelector::default()),
            ..Default::default()
        },
    }
}

fn ports(rng: &mut Rng) -> Option<Vec<PortRule>> {
    const COMMON: [i32; 7] = [22, 80, 443, 5432, 6379, 8080, 9090];
    match rng.below(10) {
        0 => None,
        1 => Some(vec![PortRule {
            protocol: Protocol::TCP,
            port: Some(30000),
            end_port: Some(30100),
        }]),
        2 => Some(vec![PortRule {
            protocol: Protocol::UDP,
            port: Some(53),
            end_port: None,
        }]),
        _ => Some(vec![PortRule {
            protocol: Protocol::TCP,
            port: Some(COMMON[rng.below(COMMON.len())]),
            end_port: None,
        }]),
    }
}

pub fn policy(rng: &mut Rng, p: usize, shape: Shape) -> MeshPolicy {
    let rules = (0..RULES_PER_POLICY)
        .map(|r| PolicyRule {
            name: Some(format!("r{r}")),
            action: match rng.below(20) {
                0..15 => Action::Allow,
                15..19 => Action::Deny,
                _ => Action::Log,
            },
            from: vec![selector(rng, shape)],
            to: vec![selector(rng, shape)],
            ports: ports(rng),
        })
        .collect();
    let mode = if rng.below(20) == 0 {
        PolicyMode::Audit
    } else {
        PolicyMode::Enforce
    };
    MeshPolicy::new(
        &format!("pol-{p:04}"),
        MeshPolicySpec {
            priority: rng.below(1001) as i32,
            mode,
            rules,
            tests: vec![],
        },
    )
}

pub fn policies(shape: Shape) -> Vec<MeshPolicy> {
    let mut rng = Rng::new(11);
    let mut out: Vec<MeshPolicy> = (0..POLICIES).map(|p| policy(&mut rng, p, shape)).collect();
    if shape == Shape::Typical {
        // The last five are the platform team's mesh-wide policies.
        for (i, slot) in out.iter_mut().rev().take(5).enumerate() {
            *slot = platform(i, slot.metadata.name.as_deref().unwrap_or_default());
        }
    }
    out
}

/// A mesh-wide platform policy.
fn platform(which: usize, name: &str) -> MeshPolicy {
    let everyone = || PeerSelector {
        node_selector: Some(LabelSelector::default()),
        ..Default::default()
    };
    let infra = |first: usize| PeerSelector {
        nodes: Some((first..first + 3).map(|i| format!("node-{i:04}")).collect()),
        ..Default::default()
    };
    let port = |protocol, port| {
        Some(vec![PortRule {
            protocol,
            port,
            end_port: None,
        }])
    };
    let (from, to, ports) = match which {
        0 => (everyone(), everyone(), port(Protocol::ICMP, None)),
        1 => (infra(0), everyone(), port(Protocol::TCP, Some(9100))),
        2 => (everyone(), infra(3), port(Protocol::UDP, Some(53))),
        3 => (infra(6), everyone(), port(Protocol::TCP, Some(22))),
        _ => (everyone(), infra(9), port(Protocol::TCP, Some(5044))),
    };
    let rules = (0..RULES_PER_POLICY)
        .map(|r| PolicyRule {
            name: Some(format!("r{r}")),
            action: Action::Allow,
            from: vec![from.clone()],
            to: vec![to.clone()],
            ports: ports.clone(),
        })
        .take(1)
        .chain((1..RULES_PER_POLICY).map(|r| PolicyRule {
            name: Some(format!("r{r}")),
            action: Action::Log,
            from: vec![from.clone()],
            to: vec![to.clone()],
            ports: Some(vec![PortRule {
                protocol: Protocol::TCP,
                port: Some(60000 + r as i32),
                end_port: None,
            }]),
        }))
        .collect();
    MeshPolicy::new(
        name,
        MeshPolicySpec {
            priority: 900 + which as i32,
            mode: PolicyMode::Enforce,
            rules,
            tests: vec![],
        },
    )
}

/// The policy set with one policy replaced by a fresh one (same name).
pub fn with_one_changed(
    policies: &[MeshPolicy],
    which: usize,
    seed: u64,
    shape: Shape,
) -> Vec<MeshPolicy> {
    let mut changed = policies.to_vec();
    changed[which] = policy(&mut Rng::new(seed), which, shape);
    changed
}
