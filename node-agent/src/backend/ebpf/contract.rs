//! The eBPF backend behind [`Backend`].

use super::Ebpf;
use crate::{
    backend::contract::{Applied, Backend, BackendError, Drift, Filter, RuleCounter},
    desired::Desired,
};

impl Backend for Ebpf {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn apply(&mut self, desired: &Desired, filter: &Filter<'_>) -> Result<Applied, BackendError> {
        Ok(self.apply_desired(desired, filter)?)
    }

    fn cuts_denied_flows(&self) -> bool {
        true
    }

    fn drift(&mut self) -> Result<Vec<Drift>, BackendError> {
        let mut drift = Vec::new();
        if self.detached()? {
            drift.push(Drift::Programs);
        }
        drift.extend(self.guard.drift()?);
        Ok(drift)
    }

    fn repair(&mut self) -> Result<(), BackendError> {
        if self.detached()? {
            self.attach()?;
        }
        Ok(self.guard.repair()?)
    }

    fn counters(&mut self) -> Result<Vec<RuleCounter>, BackendError> {
        Ok(self.rule_counters()?)
    }

    fn teardown(&mut self) -> Result<(), BackendError> {
        self.remove_all()?;
        Ok(self.guard.teardown()?)
    }
}
