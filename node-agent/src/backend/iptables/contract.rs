//! The iptables backend behind [`Backend`]: a NodePolicy is rendered (pure,
//! [`render`]) for the families the node has, then applied as one
//! transaction.

use super::{
    Iptables,
    render::{Options, render},
};
use crate::{
    backend::contract::{Applied, Backend, BackendError, Drift, Filter, RuleCounter},
    desired::Desired,
};

impl Iptables {
    /// What rendering needs: the agent-wide settings and this backend's
    /// interface and families.
    pub fn options<'a>(&'a self, filter: &'a Filter<'_>) -> Options<'a> {
        Options {
            interface: &self.interface,
            enforcement: filter.enforcement,
            nflog_group: filter.nflog_group,
            mesh_cidrs: filter.mesh_cidrs,
            families: &self.families,
        }
    }
}

impl Backend for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn apply(&mut self, desired: &Desired, filter: &Filter<'_>) -> Result<Applied, BackendError> {
        let rendered = render(desired, &self.options(filter));
        let changes = self.apply_rendered(&rendered)?;
        Ok(Applied {
            rules: rendered.rule_count(),
            changes,
        })
    }

    fn drift(&mut self) -> Result<Vec<Drift>, BackendError> {
        Ok(Iptables::drift(self)?)
    }

    fn repair(&mut self) -> Result<(), BackendError> {
        Ok(Iptables::repair(self)?)
    }

    fn counters(&mut self) -> Result<Vec<RuleCounter>, BackendError> {
        Ok(Iptables::counters(self)?)
    }

    fn teardown(&mut self) -> Result<(), BackendError> {
        Ok(Iptables::teardown(self)?)
    }
}
