//! The chains this node serves, swapped whole when a NodePolicy brings new
//! ones. A request stream takes the set current when it opens and finishes
//! on it; a chain's state (rate-limit buckets, verified tokens) survives a
//! swap as long as the chain itself is unchanged.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use meshguard_crds::node_policy::CompiledChain;
use meshguard_policy::l7::{
    self, Chain, ChainError, ChainState, Context, Outcome, RemoteKeys, Request, StepRef, Unmatched,
};

/// An immutable set of chains, shared by the streams that use it; the
/// three lists run in parallel.
#[derive(Default)]
pub struct ChainSet {
    /// As compiled, to tell an unchanged chain.
    pub compiled: Vec<CompiledChain>,
    pub chains: Vec<Chain>,
    /// Each chain's state.
    pub states: Vec<Arc<ChainState>>,
}

impl ChainSet {
    /// The state of a chain of this set.
    pub fn state_of(&self, chain: &Chain) -> Option<&Arc<ChainState>> {
        let i = self.chains.iter().position(|c| std::ptr::eq(c, chain))?;
        self.states.get(i)
    }

    /// Answers a request: selects its chain (by the name the stream's
    /// metadata gave, else by route) and runs it on that chain's state.
    /// The server and the fuzz targets both come through here, so what is
    /// fuzzed is what serves.
    pub fn answer(
        &self,
        named: Option<&str>,
        request: &Request,
        unmatched: Unmatched,
        now: std::time::Duration,
        remote_keys: &dyn RemoteKeys,
        mut step_finished: Option<&mut dyn FnMut(StepRef)>,
    ) -> Outcome {
        let selected = l7::select(&self.chains, named, request.route.as_deref());
        // A chain that was selected is one of this set's, so it has a state;
        // the fresh one only stands in for "no chain", where nothing is kept.
        let none = ChainState::default();
        let state = selected
            .as_ref()
            .ok()
            .and_then(|c| self.state_of(c))
            .map_or(&none, |s| s.as_ref());
        // Context ties the observer's lifetime to the state's; a local
        // closure that forwards to it has the shorter one.
        let mut forward = |step: StepRef| {
            if let Some(f) = step_finished.as_deref_mut() {
                f(step);
            }
        };
        l7::answer(
            selected,
            request,
            unmatched,
            &mut Context {
                now,
                state,
                remote_keys,
                step_finished: Some(&mut forward),
            },
        )
    }
}

/// The current set, replaced atomically.
#[derive(Clone, Default)]
pub struct Current(Arc<RwLock<Arc<ChainSet>>>);

impl Current {
    pub fn get(&self) -> Arc<ChainSet> {
        // A poisoned lock only means a writer panicked between two whole
        // sets; the set in it is still a whole one.
        match self.0.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Prepares every chain; on any error nothing changes (the previous
    /// set stays served). Returns how many chains are served.
    pub fn replace(&self, compiled: &[CompiledChain]) -> Result<usize, ChainError> {
        let old = self.get();
        let previous: HashMap<&str, usize> = old
            .compiled
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut set = ChainSet::default();
        for c in compiled {
            set.chains.push(Chain::prepare(c)?);
            let state = match previous.get(c.name.as_str()) {
                Some(&i) if old.compiled[i] == *c => old.states[i].clone(),
                _ => Arc::default(),
            };
            set.states.push(state);
            set.compiled.push(c.clone());
        }
        let count = set.chains.len();
        let set = Arc::new(set);
        match self.0.write() {
            Ok(mut current) => *current = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(count)
    }

    /// Drops idle rate-limit buckets and expired tokens of every chain
    /// (memory stays bounded: `ChainState::forget_idle`). Returns the
    /// rate-limit keys and the tokens still held.
    pub fn forget_idle(&self, now: std::time::Duration) -> (usize, usize) {
        let set = self.get();
        let (mut keys, mut tokens) = (0, 0);
        for state in &set.states {
            state.forget_idle(now);
            keys += state.limits.len();
            tokens += state.tokens.len();
        }
        (keys, tokens)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use meshguard_policy::l7::chain::StepKind;

    use super::*;

    fn compiled(name: &str, requests: u32) -> CompiledChain {
        serde_json::from_value(serde_json::json!({
            "name": name, "routes": [name], "mode": "Enforce", "failureMode": "Closed",
            "steps": [{ "rateLimit": { "requests": requests, "per": "Minute" } }]
        }))
        .unwrap()
    }

    /// Takes one request from the first step's bucket of `chain`.
    fn take(current: &Current, chain: &str) -> bool {
        let set = current.get();
        let i = set.compiled.iter().position(|c| c.name == chain).unwrap();
        let StepKind::RateLimit(limit) = &set.chains[i].steps[0].kind else {
            panic!("not a rate limit")
        };
        set.states[i]
            .limits
            .take(0, limit, "", Duration::from_secs(100))
            .is_ok()
    }

    #[test]
    fn a_swap_keeps_the_state_of_unchanged_chains_only() {
        let current = Current::default();
        current
            .replace(&[compiled("a/kept", 1), compiled("a/changed", 1)])
            .unwrap();
        assert!(take(&current, "a/kept") && take(&current, "a/changed"));
        let before = current.get();
        current
            .replace(&[compiled("a/kept", 1), compiled("a/changed", 2)])
            .unwrap();
        assert!(!take(&current, "a/kept"), "its bucket survived the swap");
        assert!(take(&current, "a/changed"), "a changed chain starts afresh");
        assert_eq!(
            before.chains.len(),
            2,
            "a stream holding the old set keeps it"
        );
    }

    #[test]
    fn a_chain_that_cannot_run_leaves_the_previous_set_served() {
        let current = Current::default();
        current.replace(&[compiled("a/one", 1)]).unwrap();
        let mut bad = compiled("a/two", 1);
        bad.steps[0].rate_limit.as_mut().unwrap().requests = 0;
        let error = current.replace(&[compiled("a/one", 5), bad]).unwrap_err();
        assert_eq!(error.step, 0);
        let set = current.get();
        assert_eq!(set.compiled, vec![compiled("a/one", 1)]);
    }
}
