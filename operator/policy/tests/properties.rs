//! Property tests: random meshes and policy sets, compiled, and compared with
//! the reference evaluator (`support::reference`), which shares no code with
//! the compiler:
//!
//! - compiled peers equal the reference's peers (semantics 6);
//! - `meshguard check`'s evaluator gives the reference's verdict;
//! - a packet gets through the compiled NodePolicies — routed by the peers'
//!   allowed IPs, through the egress list at its source and the ingress list
//!   at its destination, as an agent applies them — exactly when the
//!   reference allows it;
//! - the output does not depend on input order, and a node's revision changes
//!   exactly when its spec does.
//!
//! `PROPTEST_CASES` overrides the number of cases (10,000 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{collections::BTreeMap, net::IpAddr};

use meshguard_crds::{NodePolicySpec, Protocol, Verdict};
use meshguard_policy::{
    compile::{Compiler, Inputs},
    evaluate::{Flow, evaluate},
    policy_tests::resolve,
};
use proptest::prelude::*;
use support::{
    Scenario, agent, compiled,
    reference::{self, Traffic},
    scenario,
};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000)
}

/// Addresses that belong to no member, to probe `cidrs` and `all` matches.
const PROBES: [&str; 3] = ["8.8.8.8", "192.168.0.200", "fd99::1"];

fn check_scenario(s: &Scenario, flow_seed: u64) -> Result<(), TestCaseError> {
    let compiled = compiled(&s.members, &s.policies);
    let specs: BTreeMap<&str, NodePolicySpec> = s
        .members
        .iter()
        .map(|m| (m.name.as_str(), compiled.node_policy(&m.name).unwrap()))
        .collect();

    // Peers, both from the query API and in the NodePolicies.
    for a in &s.members {
        for b in &s.members {
            let expected = reference::peers(&s.policies, &s.members, a, b);
            prop_assert_eq!(
                compiled.are_peers(&a.name, &b.name),
                expected,
                "peers {} {}",
                a.name,
                b.name
            );
            let listed = specs[a.name.as_str()]
                .peers
                .iter()
                .any(|p| p.name == b.name);
            prop_assert_eq!(listed, expected, "{} lists {} as a peer", a.name, b.name);
        }
    }

    // Every node owns exactly what the reference says: mesh IP and routed subnets.
    let mut probes: Vec<IpAddr> = s
        .members
        .iter()
        .flat_map(|m| reference::owned(&s.members, m))
        .collect();
    probes.extend(s.members.iter().flat_map(|m| {
        m.allowed_ips
            .iter()
            .flat_map(|p| reference::hosts(p.to_string().parse().unwrap()))
    }));
    probes.extend(PROBES.iter().map(|p| p.parse::<IpAddr>().unwrap()));
    for m in &s.members {
        for &ip in &probes {
            let expected = reference::owner(&s.members, ip).is_some_and(|o| o.name == m.name);
            prop_assert_eq!(
                agent::owns(&specs[m.name.as_str()], ip),
                expected,
                "{} owns {}",
                m.name,
                ip
            );
        }
    }

    // Flows: every ordered pair of addresses, a few kinds of traffic each.
    let samples = reference::traffic_samples(&s.policies);
    let mut addresses: Vec<IpAddr> = s
        .members
        .iter()
        .flat_map(|m| reference::owned(&s.members, m))
        .collect();
    addresses.extend(PROBES.iter().map(|p| p.parse::<IpAddr>().unwrap()));
    let mut pick = flow_seed;
    for &src in &addresses {
        for &dst in &addresses {
            if src == dst {
                continue;
            }
            for _ in 0..3 {
                pick = pick
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let traffic = samples[(pick >> 33) as usize % samples.len()];
                let expected = reference::allowed(&s.policies, &s.members, src, dst, traffic);

                // The evaluator behind `meshguard check` and the in-policy tests.
                if let Some((protocol, port)) = match traffic {
                    Traffic::Port(p, n) => Some((p, Some(n))),
                    Traffic::Icmp => Some((Protocol::ICMP, None)),
                    Traffic::Other => None,
                } {
                    let text = |ip: IpAddr| ip.to_string();
                    let flow = Flow {
                        src: resolve(compiled.members(), &text(src)).unwrap(),
                        dst: resolve(compiled.members(), &text(dst)).unwrap(),
                        protocol,
                        port,
                    };
                    let decision = evaluate(compiled.policy_set(), &flow);
                    prop_assert_eq!(
                        decision.verdict == Verdict::Allow,
                        expected,
                        "check {} -> {} {:?}",
                        src,
                        dst,
                        traffic
                    );
                }

                // The dataplane: only between addresses of two different members.
                let (Some(from), Some(to)) = (
                    reference::owner(&s.members, src),
                    reference::owner(&s.members, dst),
                ) else {
                    continue;
                };
                if from.name == to.name {
                    continue;
                }
                let delivered = agent::delivers(
                    (from.name.as_str(), &specs[from.name.as_str()]),
                    (to.name.as_str(), &specs[to.name.as_str()]),
                    src,
                    dst,
                    traffic,
                );
                prop_assert_eq!(
                    delivered,
                    expected,
                    "dataplane {} ({}) -> {} ({}) {:?}",
                    src,
                    from.name,
                    dst,
                    to.name,
                    traffic
                );
            }
        }
    }

    // Input order does not matter.
    let mut members = s.members.clone();
    members.reverse();
    let mut policies = s.policies.clone();
    policies.reverse();
    let again = compiled_pair(&members, &policies);
    for m in &s.members {
        let spec = again.node_policy(&m.name);
        prop_assert_eq!(
            spec.as_ref(),
            Some(&specs[m.name.as_str()]),
            "order changed {}",
            m.name
        );
    }

    // A compiler that remembers between compiles gives what a fresh one does,
    // through a sequence of edits.
    let mut compiler = Compiler::default();
    let mut edited = s.policies.clone();
    let mut members = s.members.clone();
    for step in 0..8 {
        match step {
            0 => {}
            1 => edited.rotate_left(1),
            2 => {
                if let Some(p) = edited.first_mut() {
                    p.spec.priority = (p.spec.priority + 7) % 1001;
                    if let Some(r) = p.spec.rules.first_mut() {
                        r.ports = None;
                    }
                }
            }
            3 => {
                // A rename: the old name goes, a new one comes.
                if let Some(p) = edited.last_mut() {
                    p.metadata.name = Some("renamed".into());
                }
            }
            4 => {
                // A policy that cannot be read (validation skipped) joins.
                let broken = meshguard_crds::PeerSelector {
                    cidrs: Some(vec![meshguard_crds::CidrBlock {
                        cidr: "bad".into(),
                        except: None,
                    }]),
                    ..Default::default()
                };
                edited.push(support::policy(
                    "broken",
                    5,
                    vec![support::rule(
                        meshguard_crds::Action::Deny,
                        vec![broken],
                        vec![support::all()],
                        None,
                    )],
                ));
            }
            5 => {
                // A member is relabelled.
                if let Some(m) = members.first_mut() {
                    m.labels.insert("role".into(), "c".into());
                }
            }
            6 => {
                // A copy of a policy under a new name.
                if let Some(p) = edited.first().cloned() {
                    let mut copy = p;
                    copy.metadata.name = Some("copy".into());
                    edited.push(copy);
                }
            }
            _ => {
                edited.pop();
            }
        }
        let inputs = Inputs {
            members: &members,
            policies: &edited,
            chains: &[],
            secrets: &[],
            config_maps: &[],
            listen_port: 51820,
        };
        let remembered = compiler.compile(&inputs);
        let fresh = meshguard_policy::compile::compile(&inputs);
        for m in &members {
            prop_assert_eq!(
                remembered.node_policy(&m.name),
                fresh.node_policy(&m.name),
                "step {} node {}",
                step,
                m.name
            );
        }
    }

    // Revisions change exactly when content does: drop a policy and compare.
    let fewer = compiled_pair(&s.members, &s.policies[1..]);
    for m in &s.members {
        let (before, after) = (&specs[m.name.as_str()], fewer.node_policy(&m.name).unwrap());
        let same_content = NodePolicySpec {
            revision: String::new(),
            ..before.clone()
        } == NodePolicySpec {
            revision: String::new(),
            ..after.clone()
        };
        prop_assert_eq!(
            before.revision == after.revision,
            same_content,
            "revision of {}",
            m.name
        );
    }
    Ok(())
}

fn compiled_pair(
    members: &[meshguard_policy::members::Member],
    policies: &[meshguard_crds::MeshPolicy],
) -> meshguard_policy::compile::Compiled {
    compiled(members, policies)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_mesh_agrees_with_the_reference(s in scenario(), seed in any::<u64>()) {
        check_scenario(&s, seed)?;
    }
}

#[test]
fn the_reference_itself_follows_the_semantics() {
    // A hand-checked case, so the oracle is not trusted blindly.
    use meshguard_crds::Action;
    use support::*;
    let members = vec![
        member("w", &[("role", "web")], "100.64.0.1"),
        member("d", &[("role", "db")], "100.64.0.2"),
    ];
    let policies = vec![
        policy(
            "b-allow",
            10,
            vec![rule(
                Action::Allow,
                vec![labels(&[("role", "web")])],
                vec![labels(&[("role", "db")])],
                Some(vec![tcp(5432)]),
            )],
        ),
        policy(
            "a-deny",
            10,
            vec![rule(
                Action::Deny,
                vec![all()],
                vec![nodes(&["d"])],
                Some(vec![tcp(5432)]),
            )],
        ),
    ];
    let (w, d): (IpAddr, IpAddr) = ("100.64.0.1".parse().unwrap(), "100.64.0.2".parse().unwrap());
    // Same priority: a-deny comes first by name and shadows the allow completely.
    assert!(!reference::allowed(
        &policies,
        &members,
        w,
        d,
        Traffic::Port(Protocol::TCP, 5432)
    ));
    assert!(!reference::peers(
        &policies,
        &members,
        &members[0],
        &members[1]
    ));
}
