//! In-policy `tests` (semantics 8): each asserts the verdict of one flow under
//! the whole Enforce-mode policy set, whichever policy it is written in.

use std::{fmt, net::IpAddr};

use meshguard_crds::{MeshPolicy, PolicyTest, Protocol, Verdict};

use crate::{
    evaluate::{Flow, evaluate},
    members::{Endpoint, Member},
    policy_set::PolicySet,
};

/// The result of one test.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub policy: String,
    /// Position in the policy's `tests`.
    pub index: usize,
    pub test: PolicyTest,
    /// What the policy set decided; `None` when an end could not be resolved.
    pub got: Option<Verdict>,
    /// `<policy>/<rule>` that decided; `None` for the default deny.
    pub decided_by: Option<String>,
    /// Why the test could not run.
    pub problem: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.got == Some(self.test.expect)
    }
}

impl fmt::Display for Outcome {
    /// `from -> to proto/port: expected X, got Y (decided by policy/rule)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.test;
        let traffic = match t.port {
            Some(port) => format!("{:?}/{port}", t.protocol),
            None => format!("{:?}", t.protocol),
        };
        write!(
            f,
            "{} -> {} {traffic}: expected {:?}, ",
            t.from, t.to, t.expect
        )?;
        match (&self.got, &self.problem) {
            (_, Some(problem)) => write!(f, "could not run: {problem}"),
            (Some(got), None) => {
                let by = self.decided_by.as_deref().unwrap_or("the default deny");
                write!(f, "got {got:?} (decided by {by})")
            }
            (None, None) => write!(f, "no result"),
        }
    }
}

/// A test's `from` or `to`: a member name, a member's mesh IP, or any address.
pub fn resolve<'a>(members: &'a [Member], text: &str) -> Option<Endpoint<'a>> {
    if let Some(member) = members.iter().find(|m| m.name == text) {
        return Some(Endpoint::Member(member));
    }
    let ip: IpAddr = text.parse().ok()?;
    Some(match members.iter().find(|m| m.mesh_ip == ip) {
        Some(member) => Endpoint::Member(member),
        None => Endpoint::Address(ip),
    })
}

/// Runs the tests of every policy in `policies` against `set`.
pub fn run(policies: &[MeshPolicy], set: &PolicySet, members: &[Member]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for policy in policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        for (index, test) in policy.spec.tests.iter().enumerate() {
            let mut outcome = Outcome {
                policy: name.clone(),
                index,
                test: test.clone(),
                got: None,
                decided_by: None,
                problem: None,
            };
            match (resolve(members, &test.from), resolve(members, &test.to)) {
                (Some(src), Some(dst)) => {
                    let port = test
                        .port
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|_| test.protocol != Protocol::ICMP);
                    let decision = evaluate(
                        set,
                        &Flow {
                            src,
                            dst,
                            protocol: test.protocol,
                            port,
                        },
                    );
                    outcome.got = Some(decision.verdict);
                    outcome.decided_by = decision.rule.map(|r| set.rule_id(r));
                }
                (src, _) => {
                    let unknown = if src.is_none() { &test.from } else { &test.to };
                    outcome.problem =
                        Some(format!("{unknown:?} is neither a member nor an IP address"));
                }
            }
            outcomes.push(outcome);
        }
    }
    outcomes
}
