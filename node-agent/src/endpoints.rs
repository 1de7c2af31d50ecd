//! Peer endpoints written as names (`backup.example.net:51820`), resolved
//! before the reconciler runs and again before every resync.
//!
//! Resolution is the one step of an apply that waits on the network, so it
//! happens here, on the async side, with a timeout per name and all names at
//! once — never under the reconciler's lock, which `/metrics` needs too. A
//! name that fails keeps the address it resolved to last time (a DNS outage
//! takes no endpoint away); a name never resolved is left out, and the peer
//! is added without an endpoint (it can still connect to us), which the
//! status reports.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use meshguard_crds::NodePolicySpec;

/// How long one name may take. glibc's own default is 5 s per attempt, and
/// an apply waits for the slowest name.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Endpoint text -> address, for the names among a NodePolicy's endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints(BTreeMap<String, SocketAddr>);

impl Endpoints {
    /// The address of an endpoint as written: literal, or resolved.
    pub fn get(&self, text: &str) -> Option<SocketAddr> {
        text.parse().ok().or_else(|| self.0.get(text).copied())
    }
}

/// The endpoints of `spec` that are names (audit peers' too, when installed).
pub fn names(spec: &NodePolicySpec, audit_peers: bool) -> Vec<String> {
    let mut out: Vec<String> = spec
        .peers
        .iter()
        .chain(spec.audit_peers.iter().filter(|_| audit_peers))
        .filter_map(|p| p.endpoint.clone())
        .filter(|e| e.parse::<SocketAddr>().is_err())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves `names` at once, each within `timeout`, falling back to `previous`.
pub async fn resolve(names: Vec<String>, previous: &Endpoints, timeout: Duration) -> Endpoints {
    let lookups = names.into_iter().map(|name| async move {
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host(name.clone())).await;
        let address = match found {
            Ok(Ok(mut addresses)) => addresses.next().ok_or("no address".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        (name, address)
    });
    let mut out = BTreeMap::new();
    for (name, address) in futures::future::join_all(lookups).await {
        match address {
            Ok(address) => {
                out.insert(name, address);
            }
            Err(error) => match previous.0.get(&name) {
                Some(&last) => {
                    tracing::warn!(endpoint = %name, %error, %last, "not resolved; keeping the last address");
                    out.insert(name, last);
                }
                None => tracing::warn!(endpoint = %name, %error, "not resolved"),
            },
        }
    }
    Endpoints(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_lookup_and_failures_keep_the_last_address() {
        let last: SocketAddr = "10.0.0.9:51820".parse().unwrap();
        let previous = Endpoints(BTreeMap::from([("gone.invalid:51820".to_owned(), last)]));
        let resolved = resolve(
            vec![
                "gone.invalid:51820".into(),
                "never.invalid:51820".into(),
                "localhost:51820".into(),
            ],
            &previous,
            TIMEOUT,
        )
        .await;
        assert_eq!(resolved.get("gone.invalid:51820"), Some(last));
        assert_eq!(resolved.get("never.invalid:51820"), None);
        assert!(
            resolved
                .get("localhost:51820")
                .is_some_and(|a| a.ip().is_loopback())
        );
        assert_eq!(resolved.get("[fd00::1]:7"), "[fd00::1]:7".parse().ok());
    }
}
