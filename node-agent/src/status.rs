//! What the agent reports: a NodePolicy status (in file mode, written to
//! `--status-file` atomically; in a cluster, to the NodePolicy).

use std::path::{Path, PathBuf};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use meshguard_crds::{NodePolicyStatus, conditions};

use crate::state::kube::{KubeError, StatusWriter};

/// Where the status goes.
pub enum Sink {
    /// File mode without `--status-file`: the log is the only report.
    Log,
    File(PathBuf),
    Kube(Box<StatusWriter>),
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing the status file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl Sink {
    pub async fn write(&self, status: &NodePolicyStatus) -> Result<(), SinkError> {
        match self {
            Sink::Log => Ok(()),
            Sink::File(path) => write_file(path, status).map_err(|source| SinkError::File {
                path: path.display().to_string(),
                source,
            }),
            Sink::Kube(writer) => Ok(writer.write(status).await?),
        }
    }

    /// Reports a refused desired state beyond the status: an Event in a
    /// cluster (the status holds only the latest reason; Events keep the
    /// history `kubectl describe` shows). Files and logs have no Events.
    pub async fn refused(&self, reason: &str, uid: Option<&str>) -> Result<(), SinkError> {
        match self {
            Sink::Log | Sink::File(_) => Ok(()),
            Sink::Kube(writer) => Ok(writer.refused(reason, uid).await?),
        }
    }
}

/// Sets a condition (the agent's conditions carry no generation: a
/// NodePolicy's spec is identified by its revision).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) {
    let verdict = conditions::Verdict {
        type_,
        status,
        reason,
        message,
        observed_generation: None,
    };
    conditions::set(conditions, verdict, &Time(Timestamp::now()));
}

pub fn condition<'a>(status: &'a NodePolicyStatus, type_: &str) -> Option<&'a Condition> {
    conditions::get(&status.conditions, type_)
}

/// Writes the status as YAML, replacing the file atomically.
pub fn write_file(path: &Path, status: &NodePolicyStatus) -> std::io::Result<()> {
    let text = serde_saphyr::to_string(status).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
