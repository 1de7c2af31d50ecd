//! The API client of the operator and the agent: kube's configuration
//! (in-cluster, else `KUBECONFIG`) with a read timeout.
//!
//! kube 5 sets no read timeout, so a request the API server accepted and
//! never answers (a list stuck behind an overloaded server, a half-open
//! connection) held its watcher forever: no error, no retry, no update —
//! for the agent no new NodePolicy, for the operator no new policy. With a
//! read timeout it fails and the watch's backoff retries it. Watches are
//! not cut by it: kube's watcher reconnects a watch idle for 295 s (its
//! 290 s plus 5 s) itself, before the default here runs out.

use std::time::Duration;

use kube::{Client, Config};

/// The default read timeout: past kube's watch idle timeout, so that a
/// quiet watch never meets it.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Kubernetes client configuration (in-cluster service account or KUBECONFIG): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// The inferred configuration with `read_timeout` on every read, counted
/// from when the request was written (not from when a pooled connection
/// went idle).
pub fn with_read_timeout(mut config: Config, read_timeout: Duration) -> Config {
    config.read_timeout = Some(read_timeout);
    config.reset_reader_on_write = true;
    config
}

/// A client from the inferred configuration, reads bounded by `read_timeout`.
pub async fn client(read_timeout: Duration) -> Result<Client, ClientError> {
    let config = with_read_timeout(Config::infer().await?, read_timeout);
    Ok(Client::try_from(config)?)
}
