//! A synthetic mesh at the scale the compiler must handle: 5,000 members,
//! 1,000 policies with 4,000 rules, labels over 100 values. Deterministic, so
//! every run measures the same inputs.
//!
//! Members carry `app` (80 values), `tier` (10, following the app) and `zone`
//! (10). Rules mostly connect apps, some tiers, some app-in-zone, some named
//! members, some CIDRs; a few reach every member (monitoring-style), which
//! gives the largest NodePolicies.

use meshguard_crds::{
    Action, CidrBlock, LabelSelector, MeshPolicy, MeshPolicySpec, PeerSelector, PolicyMode,
    PolicyRule, PortRule, Protocol,
};
use meshguard_operator::{addresses::Prefix, members::Member};

pub const MEMBERS: usize = 5_000;
pub const POLICIES: usize = 1_000;
pub const RULES_PER_POLICY: usize = 4;

/// xorshift64*: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

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
                *b = (rng.next() >> (j % 8)) as u8;
            }
            Member {
                name: format!("node-{i:04}"),
                labels: labels.into_iter().collect(),
                mesh_ip: format!("100.96.{}.{}", i / 250, i % 250 + 1)
                    .parse()
                    .expect("valid address"),
                public_key: base64(&key),
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

fn base64(bytes: &[u8; 32]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out.push('=');
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

fn selector(rng: &mut Rng) -> PeerSelector {
    match rng.below(100) {
        0..60 => labels(&[("app", format!("app-{:02}", rng.below(80)))]),
        60..75 => labels(&[("tier", format!("tier-{}", rng.below(10)))]),
        75..85 => labels(&[
            ("app", format!("app-{:02}", rng.below(80))),
            ("zone", format!("zone-{}", rng.below(10))),
        ]),
        85..90 => PeerSelector {
            nodes: Some(
                (0..3)
                    .map(|_| format!("node-{:04}", rng.below(MEMBERS)))
                    .collect(),
            ),
            ..Default::default()
        },
        90..95 => labels(&[("zone", format!("zone-{}", rng.below(10)))]),
        95..98 => {
            let third = rng.below(20);
            PeerSelector {
                cidrs: Some(vec![CidrBlock {
                    cidr: format!("100.96.{third}.0/24"),
                    except: Some(vec![format!("100.96.{third}.0/28")]),
                }]),
                ..Default::default()
            }
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

pub fn policy(rng: &mut Rng, p: usize) -> MeshPolicy {
    let rules = (0..RULES_PER_POLICY)
        .map(|r| PolicyRule {
            name: Some(format!("r{r}")),
            action: match rng.below(20) {
                0..15 => Action::Allow,
                15..19 => Action::Deny,
                _ => Action::Log,
            },
            from: vec![selector(rng)],
            to: vec![selector(rng)],
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

pub fn policies() -> Vec<MeshPolicy> {
    let mut rng = Rng::new(11);
    (0..POLICIES).map(|p| policy(&mut rng, p)).collect()
}

/// The policy set with one policy replaced by a fresh one (same name).
pub fn with_one_changed(policies: &[MeshPolicy], which: usize, seed: u64) -> Vec<MeshPolicy> {
    let mut changed = policies.to_vec();
    changed[which] = policy(&mut Rng::new(seed), which);
    changed
}
