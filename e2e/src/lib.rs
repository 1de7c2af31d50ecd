//! End-to-end harnesses.
//!
//! [`mesh::Mesh`] builds a mesh of nodes in network namespaces on one
//! machine, each as a production node would be: its own network namespace
//! (`eth0` on a shared switch), its own mount namespace (so its userspace
//! WireGuard daemon's socket is at the real `/var/run/wireguard/meshguard0.sock`),
//! a boringtun daemon the agent does not own, and the real `meshguard-agent`
//! in file mode fed by the real `meshguard compile`. Traffic between nodes is
//! real: `mesh-probe` opens sockets inside the namespaces.
//!
//! ```text
//!   <run>-sw: br0 10.99.0.254 (gateway; counts what arrives in cleartext)
//!     │ veth
//!   <run>-<node>: eth0 10.99.0.N ── boringtun: meshguard0 100.96.x.y ── agent
//! ```
//!
//! Everything is named after a per-run prefix and removed when the mesh is
//! dropped, also when a test fails.

#![forbid(unsafe_code)]

pub mod dashboard;
pub mod flood;
pub mod l7;
pub mod l7_bench;
pub mod l7_demo;
pub mod load;
pub mod manifests;
pub mod matrix;
pub mod mesh;
pub mod netns;
pub mod probe;
pub mod workload;
