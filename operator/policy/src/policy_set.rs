//! The policy set in evaluation order (semantics 2 and 4): every policy sorted
//! by (priority, name), rules in their listed order, Audit-mode rules marked.
//! Everything that evaluates a flow — the compiler, `meshguard check`, the
//! in-policy tests — reads this one structure.

use std::collections::HashMap;

use meshguard_crds::{Action, MeshPolicy, PeerSelector, PolicyMode, PortRange};

use crate::{
    diagnostics::{Diagnostic, ObjectRef},
    ports::PortSet,
    selectors::Selector,
};

/// Index of an interned selector in [`PolicySet::selectors`].
pub type SelectorId = usize;

#[derive(Clone, Debug)]
pub struct PolicyInfo {
    pub name: String,
    pub priority: i32,
    pub mode: PolicyMode,
}

/// One side (`from` or `to`) of a rule.
#[derive(Clone, Debug)]
pub struct Side {
    pub selectors: Vec<SelectorId>,
    /// Canonical text of the selectors: equal sides match the same addresses.
    pub key: String,
}

#[derive(Clone, Debug)]
pub struct OrderedRule {
    /// Index into [`PolicySet::policies`].
    pub policy: usize,
    /// Position in the policy's `rules`.
    pub index: usize,
    pub name: Option<String>,
    pub action: Action,
    /// From an Audit-mode policy: counted, never deciding.
    pub audit: bool,
    pub from: Side,
    pub to: Side,
    pub ports: PortSet,
    /// `ports` as the NodePolicy carries them; `None` is all traffic.
    pub port_ranges: Option<Vec<PortRange>>,
}

impl OrderedRule {
    /// Whether the rule can decide a flow (Allow or Deny, Enforce mode).
    pub fn decides(&self) -> bool {
        !self.audit && self.action != Action::Log
    }
}

#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<PolicyInfo>,
    pub rules: Vec<OrderedRule>,
    pub selectors: Vec<Selector>,
}

impl PolicySet {
    /// Orders and normalizes validated policies.
    ///
    /// A rule whose selectors cannot be read (only possible when validation
    /// was skipped) fails closed, with an error: a Deny treats the side it
    /// cannot read as everyone, so it denies more; an Allow or Log is left
    /// out. Nothing invalid ever widens access.
    pub fn build(policies: &[MeshPolicy]) -> (PolicySet, Vec<Diagnostic>) {
        let mut sorted: Vec<&MeshPolicy> = policies.iter().collect();
        sorted.sort_by(|a, b| (a.spec.priority, name_of(a)).cmp(&(b.spec.priority, name_of(b))));

        let mut set = PolicySet::default();
        let mut interned: HashMap<Selector, SelectorId> = HashMap::new();
        let mut diagnostics = Vec::new();
        for policy in sorted {
            let object = ObjectRef::new("MeshPolicy", None, name_of(policy));
            for (index, rule) in policy.spec.rules.iter().enumerate() {
                let mut side = |list: &[PeerSelector], field: &str| -> (Side, bool) {
                    let mut broken = false;
                    let mut selectors = Vec::new();
                    for (i, spec) in list.iter().enumerate() {
                        match Selector::from_spec(spec) {
                            Ok(selector) => selectors.push(selector),
                            Err(e) => {
                                let field = format!("spec.rules[{index}].{field}[{i}]");
                                diagnostics.push(Diagnostic::error(
                                    object.clone(),
                                    Some(field),
                                    e.to_string(),
                                ));
                                broken = true;
                            }
                        }
                    }
                    if broken && rule.action == Action::Deny {
                        selectors = vec![Selector::All];
                    }
                    let mut ids: Vec<SelectorId> = selectors
                        .into_iter()
                        .map(|s| intern(&mut set.selectors, &mut interned, s))
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let mut keys: Vec<String> =
                        ids.iter().map(|&id| set.selectors[id].key()).collect();
                    keys.sort();
                    (
                        Side {
                            selectors: ids,
                            key: keys.join("|"),
                        },
                        broken,
                    )
                };
                let (from, from_broken) = side(&rule.from, "from");
                let (to, to_broken) = side(&rule.to, "to");
                if from_broken || to_broken {
                    let what = if rule.action == Action::Deny {
                        "this Deny rule cannot be read: it now denies to or from everyone on the side it cannot read (fails closed)"
                    } else {
                        "this rule cannot be read and is left out (fails closed)"
                    };
                    diagnostics.push(Diagnostic::error(
                        object.clone(),
                        Some(format!("spec.rules[{index}]")),
                        what,
                    ));
                    if rule.action != Action::Deny {
                        continue;
                    }
                }
                set.rules.push(OrderedRule {
                    policy: set.policies.len(),
                    index,
                    name: rule.name.clone(),
                    action: rule.action,
                    audit: policy.spec.mode == PolicyMode::Audit,
                    from,
                    to,
                    ports: PortSet::from_rules(rule.ports.as_deref()),
                    port_ranges: rule.ports.as_ref().map(|ports| {
                        ports
                            .iter()
                            .map(|p| PortRange {
                                protocol: p.protocol,
                                port: p.port,
                                end_port: p.end_port,
                            })
                            .collect()
                    }),
                });
            }
            set.policies.push(PolicyInfo {
                name: name_of(policy).to_owned(),
                priority: policy.spec.priority,
                mode: policy.spec.mode,
            });
        }
        (set, diagnostics)
    }

    /// `<policy>/<rule name or index>`: the id counters, logs and iptables comments use.
    pub fn rule_id(&self, rule: usize) -> String {
        let r = &self.rules[rule];
        format!("{}/{}", self.policies[r.policy].name, self.rule_label(rule))
    }

    /// The rule's name, or its index in the policy.
    pub fn rule_label(&self, rule: usize) -> String {
        let r = &self.rules[rule];
        r.name.clone().unwrap_or_else(|| r.index.to_string())
    }

    pub fn policy_of(&self, rule: usize) -> &PolicyInfo {
        &self.policies[self.rules[rule].policy]
    }
}

fn intern(
    selectors: &mut Vec<Selector>,
    interned: &mut HashMap<Selector, SelectorId>,
    selector: Selector,
) -> SelectorId {
    let next = selectors.len();
    let id = *interned.entry(selector.clone()).or_insert(next);
    if id == next {
        selectors.push(selector);
    }
    id
}

fn name_of(policy: &MeshPolicy) -> &str {
    policy.metadata.name.as_deref().unwrap_or_default()
}
