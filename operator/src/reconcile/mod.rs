//! One reconcile pass, pure: from the [`Index`] to a [`Plan`] of writes.
//!
//! ```text
//!  Index ─▶ members (IPAM, labels) ─┐
//!        ─▶ acceptance (validate; last good on rejection) ─▶ compile (memo)
//!                                   └────────────────────────────┘
//!  compiled ─▶ NodePolicies whose revision changed ─▶ Plan.node_policies
//!           ─▶ stale NodePolicies (MeshNode gone)  ─▶ Plan.deletions
//!           ─▶ statuses that differ, Events        ─▶ Plan.statuses / notes
//! ```
//!
//! The pass never writes: the controller executes the plan and reports back
//! what it wrote ([`Reconciler::wrote`]), so a pass that finds nothing
//! changed writes nothing.

mod acceptance;
mod plan;
mod status;
mod validity;

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::Resource;
use meshguard_crds::{Kind, MeshNode, NodePolicy, size};

use meshguard_policy::{
    addresses::Prefix,
    compile::{Compiled, Compiler, Inputs},
    ipam::{Allocator, Claim},
    members::Member,
    policy_tests,
};

pub use self::{
    acceptance::Rejection,
    plan::{Deletion, Note, Plan, Registration, StatusWrite, Summary},
};
use self::{
    acceptance::{LastGood, Selection},
    validity::Validity,
};
use crate::index::Index;

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "meshguard-operator";

#[derive(Clone, Debug)]
pub struct Settings {
    pub mesh_cidr: Prefix,
    pub listen_port: u16,
    /// NodePolicies also list every non-peer in `auditPeers`.
    pub audit_peers: bool,
}

/// The state kept between passes.
pub struct Reconciler {
    settings: Settings,
    compiler: Compiler,
    allocator: Allocator,
    validity: Validity,
    last_good: LastGood,
    /// Revisions written but not yet seen back from the watch.
    written: BTreeMap<String, String>,
}

impl Reconciler {
    pub fn new(settings: Settings) -> Reconciler {
        Reconciler {
            allocator: Allocator::new(settings.mesh_cidr),
            compiler: Compiler::default().audit_peers(settings.audit_peers),
            settings,
            validity: Validity::new(),
            last_good: LastGood::default(),
            written: BTreeMap::new(),
        }
    }

    /// The controller wrote this NodePolicy revision.
    pub fn wrote(&mut self, node: &str, revision: &str) {
        self.written.insert(node.to_owned(), revision.to_owned());
    }

    pub fn plan(&mut self, index: &Index, now: &Time) -> Plan {
        let mut plan = Plan::default();
        let (members, registrations) = self.members(index);

        let mut selection = self.last_good.select(index, &mut self.validity);
        let started = Instant::now();
        let mut compiled;
        loop {
            compiled = self.compile(&members, &selection);
            plan.summary.compiles += 1;
            if !self
                .last_good
                .reject(index, &mut selection, compiled.diagnostics())
            {
                break;
            }
        }
        plan.summary.compile = started.elapsed();
        self.last_good.accept(index, &selection);
        plan.summary.members = members.len();
        plan.summary.policies = selection.policies.len();
        plan.summary.rejected = selection.rejected_policies.len() + selection.rejected_chains.len();

        self.node_policies(index, &compiled, &registrations, &mut plan);
        let tests = policy_tests::run(
            &selection.policies,
            compiled.policy_set(),
            compiled.members(),
        );
        let view = status::View {
            index,
            compiled: &compiled,
            selection: &selection,
            tests: &tests,
            registrations: &registrations,
            now,
        };
        view.write(&mut plan);
        self.validity.end_pass();
        plan
    }

    /// Members from the MeshNodes that get an address; every MeshNode's
    /// registration verdict.
    fn members(&mut self, index: &Index) -> (Vec<Member>, BTreeMap<String, Registration>) {
        let mut nodes: Vec<&MeshNode> = index.mesh_nodes.values().collect();
        // Ties (two claims on one address) go to the older MeshNode.
        nodes.sort_by(|a, b| {
            let created = |n: &MeshNode| n.metadata.creation_timestamp.clone().map(|t| t.0);
            (created(a), &a.metadata.name).cmp(&(created(b), &b.metadata.name))
        });
        let mut registrations = BTreeMap::new();
        let mut claims = Vec::new();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some(problems) = self.validity.problems(Kind::MeshNode, *node) {
                registrations.insert(name, Registration::Invalid(problems));
                continue;
            }
            let parse = |text: Option<&String>| text.and_then(|t| t.parse::<IpAddr>().ok());
            claims.push(Claim {
                name,
                fixed: parse(node.spec.mesh_ip.as_ref()),
                recorded: parse(node.status.as_ref().and_then(|s| s.mesh_ip.as_ref())),
            });
        }
        let allocated = self.allocator.allocate(&claims);
        let mut members = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let Some(result) = allocated.get(&name) else {
                continue;
            };
            match result {
                Ok(ip) => {
                    members.push(Member {
                        name: name.clone(),
                        labels: index.labels_of(node),
                        mesh_ip: *ip,
                        public_key: node.spec.public_key.clone(),
                        endpoint: node.spec.endpoint.clone(),
                        allowed_ips: node
                            .spec
                            .allowed_ips
                            .iter()
                            .flatten()
                            .filter_map(|c| c.parse().ok())
                            .collect(),
                    });
                    registrations.insert(
                        name,
                        Registration::Member {
                            ip: *ip,
                            fixed: node.spec.mesh_ip.is_some(),
                        },
                    );
                }
                Err(e) => {
                    registrations.insert(name, Registration::NoAddress(e.clone()));
                }
            }
        }
        (members, registrations)
    }

    fn compile(&mut self, members: &[Member], selection: &Selection) -> Compiled {
        self.compiler.compile(&Inputs {
            members,
            policies: &selection.policies,
            chains: &selection.chains,
            secrets: &selection.secrets,
            config_maps: &selection.config_maps,
            listen_port: self.settings.listen_port,
        })
    }

    fn node_policies(
        &mut self,
        index: &Index,
        compiled: &Compiled,
        registrations: &BTreeMap<String, Registration>,
        plan: &mut Plan,
    ) {
        for member in compiled.members() {
            let (Some(node), Some(revision)) = (
                index.mesh_nodes.get(&member.name),
                compiled.revision(&member.name),
            ) else {
                continue;
            };
            let observed = index
                .node_policies
                .get(&member.name)
                .map(|p| p.revision.as_str());
            if observed == Some(revision) {
                self.written.remove(&member.name);
                continue;
            }
            if self.written.get(&member.name).map(String::as_str) == Some(revision) {
                continue; // written; the watch has not shown it yet
            }
            // Built only for the NodePolicies that are written.
            let Some(spec) = compiled.node_policy(&member.name) else {
                continue;
            };
            let mut object = NodePolicy::new(&member.name, spec);
            object.metadata.owner_references = Some(vec![owner(node)]);
            object.metadata.labels = Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                FIELD_MANAGER.to_owned(),
            )]));
            // Measured as sent: past the bound the API server would refuse
            // it with an error naming nothing a user wrote.
            match size::checked_size(&object) {
                Ok(_) => plan.node_policies.push(object),
                Err(too_large) => {
                    plan.oversized.insert(member.name.clone(), too_large);
                }
            }
        }
        for (name, policy) in &index.node_policies {
            if !index.mesh_nodes.contains_key(name) && !registrations.contains_key(name) {
                plan.deletions.push(Deletion {
                    name: name.clone(),
                    uid: policy.uid.clone(),
                });
            }
        }
    }
}

/// NodePolicy/<node> belongs to MeshNode/<node>: deleting the MeshNode
/// deletes it.
fn owner(node: &MeshNode) -> OwnerReference {
    OwnerReference {
        api_version: MeshNode::api_version(&()).into_owned(),
        kind: MeshNode::kind(&()).into_owned(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
