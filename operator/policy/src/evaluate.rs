//! Deciding one flow by walking the ordered rules (semantics 2–4), with a
//! trace of every rule consulted: the answer to "which rule dropped my packet?".

use meshguard_crds::{Action, Protocol, Verdict};

use crate::{members::Endpoint, policy_set::PolicySet};

/// One flow: who talks to whom, over what.
#[derive(Clone, Copy, Debug)]
pub struct Flow<'a> {
    pub src: Endpoint<'a>,
    pub dst: Endpoint<'a>,
    pub protocol: Protocol,
    /// The destination port; `None` for ICMP.
    pub port: Option<u16>,
}

/// What happened at one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    FromDoesNotMatch,
    ToDoesNotMatch,
    PortsDoNotMatch,
    /// A Log rule matched: recorded, evaluation goes on.
    Logged,
    /// An Audit-mode rule matched: recorded as what it would have done.
    WouldHave(Action),
    /// An Allow or Deny rule matched and decided.
    Decided,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub rule: usize,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// The deciding rule; `None` means the default deny.
    pub rule: Option<usize>,
    /// Every rule consulted, in order, up to the deciding one.
    pub steps: Vec<Step>,
}

impl Decision {
    /// Log and Audit rules that matched.
    pub fn hits(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Logged | Outcome::WouldHave(_)))
    }
}

fn side_matches(set: &PolicySet, selectors: &[usize], end: &Endpoint) -> bool {
    selectors.iter().any(|&id| {
        let selector = &set.selectors[id];
        match end {
            Endpoint::Member(m) => selector.matches_member(m),
            Endpoint::Address(ip) => selector.matches_address(*ip),
        }
    })
}

pub fn evaluate(set: &PolicySet, flow: &Flow) -> Decision {
    let mut steps = Vec::new();
    for (index, rule) in set.rules.iter().enumerate() {
        let outcome = if !side_matches(set, &rule.from.selectors, &flow.src) {
            Outcome::FromDoesNotMatch
        } else if !side_matches(set, &rule.to.selectors, &flow.dst) {
            Outcome::ToDoesNotMatch
        } else if !rule.ports.contains(flow.protocol, flow.port) {
            Outcome::PortsDoNotMatch
        } else if rule.audit {
            Outcome::WouldHave(rule.action)
        } else if rule.action == Action::Log {
            Outcome::Logged
        } else {
            Outcome::Decided
        };
        steps.push(Step {
            rule: index,
            outcome,
        });
        if outcome == Outcome::Decided {
            let verdict = if rule.action == Action::Allow {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            return Decision {
                verdict,
                rule: Some(index),
                steps,
            };
        }
    }
    Decision {
        verdict: Verdict::Deny,
        rule: None,
        steps,
    }
}
