//! The permissions the operator's requests need, kept next to the code that
//! makes them: the chart's operator roles (rendered in `deploy/meshguard.yaml`) must grant exactly these (a test
//! compares them), so a new request without its permission fails the tests
//! rather than a cluster.

/// `(API group, resource, verbs)`. Leases are namespaced (a Role in the
/// lease namespace); everything else is cluster-wide.
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    // watch::spawn_all: a list then a watch per kind.
    ("meshguard.io", "meshpolicies", &["list", "watch"]),
    ("meshguard.io", "policychains", &["list", "watch"]),
    ("meshguard.io", "meshnodes", &["list", "watch"]),
    ("", "nodes", &["list", "watch"]),
    ("", "secrets", &["list", "watch"]),
    ("", "configmaps", &["list", "watch"]),
    // Operator::execute: server-side apply (create when new), stale deletion.
    (
        "meshguard.io",
        "nodepolicies",
        &["list", "watch", "create", "patch", "delete"],
    ),
    ("meshguard.io", "meshpolicies/status", &["patch"]),
    ("meshguard.io", "policychains/status", &["patch"]),
    ("meshguard.io", "meshnodes/status", &["patch"]),
    // Operator::publish (kube's Recorder: create, then patch a series).
    ("events.k8s.io", "events", &["create", "patch"]),
    // leader::Leadership (kube-lease-manager).
    ("coordination.k8s.io", "leases", &["get", "create", "patch"]),
];
