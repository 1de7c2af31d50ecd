//! `meshguard-operator uninstall`: the chart's pre-delete hook, so that
//! `helm uninstall` leaves no interface, chain, set or BPF pin on any node.
//!
//! A Job runs on one node, and Helm waits for Jobs but not for DaemonSets;
//! so the hook is both, and this command is the Job's:
//!
//! ```text
//!  weight -10  ServiceAccount, Role, RoleBinding   (this Job's rights only)
//!  weight  -5  DaemonSet <release>-teardown        (every node the agents run on)
//!                each pod: meshguard-agent teardown --wait-for-agent --hold
//!                  waits for the node's agent to stop (its lock), removes
//!                  everything, reports Ready, keeps the lock (an agent
//!                  restarting meanwhile waits instead of enforcing)
//!  weight   0  Job <release>-uninstall             (Helm waits for it)
//!                1. delete DaemonSet <release>-agent: the agents stop
//!                2. wait until every teardown pod is Ready ─▶ exit 0
//!                   (timeout: exit 1 naming the nodes not done)
//! ```
//!
//! Then Helm removes the hooks and the release. Between 1 and each node's
//! teardown the node keeps enforcing the last NodePolicy (an agent that
//! stops changes nothing).

use std::time::Duration;

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};

/// `(API group, resource, verbs)` these requests need: the chart's
/// uninstall Role grants exactly these (operator/tests/rbac.rs), the
/// DaemonSets by name.
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    // run: delete the agents', read the teardown's.
    ("apps", "daemonsets", &["delete", "get"]),
    // not_ready: the teardown pods, to name their nodes.
    ("", "pods", &["list"]),
];

#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    /// The agents' DaemonSet, deleted first.
    pub agent: String,
    /// The teardown DaemonSet, waited for.
    pub teardown: String,
    pub timeout: Duration,
    /// Between two looks at the teardown DaemonSet.
    pub poll: Duration,
}

/// How far the teardown DaemonSet is, from its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every node it was scheduled on has torn down.
    Done { nodes: i32 },
    /// Not yet observed by its controller, or pods not Ready yet.
    Pending { ready: i32, desired: i32 },
}

/// Pure: the DaemonSet controller's counts, once it has seen this
/// generation (before that, `desiredNumberScheduled` may still be 0).
pub fn progress(daemon_set: &DaemonSet) -> Progress {
    let Some(status) = &daemon_set.status else {
        return Progress::Pending {
            ready: 0,
            desired: 0,
        };
    };
    let observed = match (status.observed_generation, daemon_set.metadata.generation) {
        (Some(seen), Some(generation)) => seen >= generation,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let (desired, ready) = (status.desired_number_scheduled, status.number_ready);
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if observed && ready >= desired && updated >= desired {
        Progress::Done { nodes: desired }
    } else {
        Progress::Pending { ready, desired }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error("deleting DaemonSet {namespace}/{name}: {source}")]
    DeleteAgents {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading DaemonSet {namespace}/{name}: {source}")]
    ReadTeardown {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the teardown did not finish within {timeout:?}: {ready} of {desired} nodes done; not done: {waiting}"
    )]
    TimedOut {
        timeout: Duration,
        ready: i32,
        desired: i32,
        /// The nodes whose teardown pod is not Ready (and why, when known).
        waiting: String,
    },
}

/// Deletes the agents' DaemonSet, then waits for the teardown on every node.
pub async fn run(client: Client, settings: &Settings) -> Result<i32, UninstallError> {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), &settings.namespace);
    match daemon_sets
        .delete(&settings.agent, &DeleteParams::background())
        .await
    {
        Ok(_) => {
            tracing::info!(daemonset = %settings.agent, "agents deleted; their nodes keep enforcing until torn down")
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::info!(daemonset = %settings.agent, "no agents to delete")
        }
        Err(source) => {
            return Err(UninstallError::DeleteAgents {
                namespace: settings.namespace.clone(),
                name: settings.agent.clone(),
                source,
            });
        }
    }
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let mut last = None;
    loop {
        let daemon_set = daemon_sets
            .get(&settings.teardown)
            .await
            .map_err(|source| UninstallError::ReadTeardown {
                namespace: settings.namespace.clone(),
                name: settings.teardown.clone(),
                source,
            })?;
        let now = progress(&daemon_set);
        match now {
            Progress::Done { nodes } => {
                tracing::info!(nodes, "every node torn down");
                return Ok(nodes);
            }
            Progress::Pending { ready, desired } => {
                if last.as_ref() != Some(&now) {
                    tracing::info!(ready, desired, "waiting for the teardown");
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(UninstallError::TimedOut {
                        timeout: settings.timeout,
                        ready,
                        desired,
                        waiting: not_ready(&client, settings, &daemon_set).await,
                    });
                }
            }
        }
        last = Some(now);
        tokio::time::sleep(settings.poll).await;
    }
}

/// The nodes of the teardown pods not Ready, with their containers'
/// waiting or last-terminated reasons: what an operator needs to look at.
async fn not_ready(client: &Client, settings: &Settings, daemon_set: &DaemonSet) -> String {
    let selector = daemon_set
        .spec
        .selector
        .match_labels
        .as_ref()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
    let listed = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(listed) => listed,
        Err(e) => return format!("(pods not listed: {e})"),
    };
    let mut waiting: Vec<String> = listed
        .items
        .iter()
        .filter(|pod| !is_ready(pod))
        .map(|pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "(unscheduled)".into());
            match reason(pod) {
                Some(reason) => format!("{node} ({reason})"),
                None => node,
            }
        })
        .collect();
    waiting.sort();
    if waiting.is_empty() {
        "(no pod yet)".into()
    } else {
        waiting.join(", ")
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn reason(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let state = c.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref());
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        waiting
            .and_then(|w| w.reason.clone())
            .or_else(|| last.map(|t| format!("exited {}", t.exit_code)))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn daemon_set(generation: i64, status: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "t", "generation": generation },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn done_only_once_the_controller_saw_it_and_every_pod_is_ready() {
        let fresh = daemon_set(
            1,
            json!({ "currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0 }),
        );
        assert_eq!(
            progress(&fresh),
            Progress::Pending {
                ready: 0,
                desired: 0
            },
            "not observed yet: 0 of 0 is not done"
        );
        let counts = |ready: i32| {
            json!({ "observedGeneration": 1, "currentNumberScheduled": 3, "desiredNumberScheduled": 3,
                    "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": 3 })
        };
        assert_eq!(
            progress(&daemon_set(1, counts(2))),
            Progress::Pending {
                ready: 2,
                desired: 3
            }
        );
        assert_eq!(
            progress(&daemon_set(1, counts(3))),
            Progress::Done { nodes: 3 }
        );
        assert_eq!(
            progress(&daemon_set(2, counts(3))),
            Progress::Pending {
                ready: 3,
                desired: 3
            },
            "a newer generation not observed yet"
        );
        let none = daemon_set(
            1,
            json!({ "observedGeneration": 1, "currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0 }),
        );
        assert_eq!(
            progress(&none),
            Progress::Done { nodes: 0 },
            "no node to tear down"
        );
    }
}
