//! What the packets a counter counted got — the `verdict` label of
//! `meshguard_rule_packets_total`, so that a dashboard can show the drops per
//! policy and rule without knowing each rule's action and mode. Pure: the
//! rule ids the backends count and the state last applied decide it.
//!
//! | counter | enforce | agent-wide audit |
//! |---|---|---|
//! | Allow rule | `allowed` | `audited` |
//! | Deny rule, `meshguard:default-deny`, `meshguard:not-ours` | `dropped` | `audited` |
//! | Log rule | `logged` | `logged` |
//! | rule of an Audit-mode policy | `audited` | `audited` |
//! | `meshguard:leak` (the guard) | `dropped` | `dropped` |
//! | the agent's other own lines (replies, handshake, …) | `allowed` | `allowed` |
//! | a rule the state last applied no longer holds | `retired` | `retired` |
//!
//! `retired`: both backends keep a removed rule's counts (monotonic), and
//! what its packets got is no longer known from the rules.

use std::collections::HashMap;

use meshguard_crds::Action;

use super::{Direction, Enforcement, RuleCounter};
use crate::desired::{Desired, Rule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counted {
    Allowed,
    Dropped,
    Logged,
    Audited,
    Retired,
}

impl Counted {
    pub fn label(self) -> &'static str {
        match self {
            Counted::Allowed => "allowed",
            Counted::Dropped => "dropped",
            Counted::Logged => "logged",
            Counted::Audited => "audited",
            Counted::Retired => "retired",
        }
    }
}

/// The agent's own lines that decide against a flow (the guard's `leak`
/// stays outside audit: it keeps mesh addresses off other interfaces).
const DENYING: [&str; 2] = ["meshguard:default-deny", "meshguard:not-ours"];
const LEAK: &str = "meshguard:leak";

/// What counters' packets got under one state: the rules by direction and
/// id, indexed once per scrape (a scrape reads every rule's counter).
pub struct Counting<'a> {
    rules: HashMap<(Direction, &'a str), &'a Rule>,
    audit: bool,
}

impl<'a> Counting<'a> {
    /// `current`: the state last applied (none yet: every policy rule is
    /// `retired`).
    pub fn new(current: Option<&'a Desired>, enforcement: Enforcement) -> Counting<'a> {
        let mut rules = HashMap::new();
        if let Some(d) = current {
            for (direction, list) in [
                (Direction::Ingress, &d.ingress),
                (Direction::Egress, &d.egress),
            ] {
                for rule in list {
                    rules.entry((direction, rule.id.as_str())).or_insert(rule);
                }
            }
        }
        Counting {
            rules,
            audit: enforcement == Enforcement::Audit,
        }
    }

    /// What `counter`'s packets got.
    pub fn of(&self, counter: &RuleCounter) -> Counted {
        if counter.id == LEAK {
            return Counted::Dropped;
        }
        if DENYING.contains(&counter.id.as_str()) {
            return if self.audit {
                Counted::Audited
            } else {
                Counted::Dropped
            };
        }
        if counter.id.starts_with("meshguard:") {
            return Counted::Allowed;
        }
        let Some(rule) = self.rules.get(&(counter.direction, counter.id.as_str())) else {
            return Counted::Retired;
        };
        match (rule.action, rule.audit) {
            (Action::Log, _) => Counted::Logged,
            (_, true) => Counted::Audited,
            _ if self.audit => Counted::Audited,
            (Action::Allow, false) => Counted::Allowed,
            (Action::Deny, false) => Counted::Dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Remote;

    fn rule(id: &str, action: Action, audit: bool) -> Rule {
        Rule {
            id: id.into(),
            action,
            audit,
            remote: Remote::All,
            local: None,
            traffic: None,
        }
    }

    fn desired() -> Desired {
        Desired {
            revision: "1".into(),
            mesh_ip: "100.96.0.1".parse().unwrap(),
            listen_port: 51820,
            routed: vec![],
            peers: vec![],
            audit_peers: vec![],
            sets: vec![],
            ingress: vec![
                rule("p/allow", Action::Allow, false),
                rule("p/deny", Action::Deny, false),
                rule("p/log", Action::Log, false),
                rule("q/deny", Action::Deny, true),
            ],
            egress: vec![rule("p/out", Action::Allow, false)],
        }
    }

    fn of(id: &str, direction: Direction, enforcement: Enforcement) -> &'static str {
        let counter = RuleCounter {
            direction,
            id: id.into(),
            packets: 1,
            bytes: 1,
        };
        Counting::new(Some(&desired()), enforcement)
            .of(&counter)
            .label()
    }

    #[test]
    fn each_counter_is_labelled_by_what_its_packets_got() {
        use Direction::*;
        use Enforcement::*;
        let cases = [
            ("p/allow", Ingress, Enforce, "allowed"),
            ("p/deny", Ingress, Enforce, "dropped"),
            ("p/log", Ingress, Enforce, "logged"),
            ("q/deny", Ingress, Enforce, "audited"),
            ("p/out", Egress, Enforce, "allowed"),
            ("p/allow", Egress, Enforce, "retired"),
            ("p/gone", Ingress, Enforce, "retired"),
            ("meshguard:default-deny", Ingress, Enforce, "dropped"),
            ("meshguard:not-ours", Egress, Enforce, "dropped"),
            ("meshguard:leak", Guard, Enforce, "dropped"),
            ("meshguard:replies", Ingress, Enforce, "allowed"),
            ("p/allow", Ingress, Audit, "audited"),
            ("p/deny", Ingress, Audit, "audited"),
            ("p/log", Ingress, Audit, "logged"),
            ("meshguard:default-deny", Ingress, Audit, "audited"),
            ("meshguard:leak", Guard, Audit, "dropped"),
            ("meshguard:audit-accept", Ingress, Audit, "allowed"),
        ];
        for (id, direction, enforcement, want) in cases {
            assert_eq!(
                of(id, direction, enforcement),
                want,
                "{id} {direction:?} {enforcement:?}"
            );
        }
        let before_any = RuleCounter {
            direction: Direction::Ingress,
            id: "p/allow".into(),
            packets: 1,
            bytes: 1,
        };
        assert_eq!(
            Counting::new(None, Enforcement::Enforce).of(&before_any),
            Counted::Retired
        );
    }
}
