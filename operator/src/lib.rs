//! The meshguard operator: the Kubernetes edge around `meshguard-policy`.
//!
//! ```text
//!  controller::watch ──▶ index (the cluster as the compiler needs it)
//!                          │
//!                          ▼
//!                  reconcile (pure, one pass): acceptance (last good objects),
//!                    validity, meshguard_policy::compile, ipam::Allocator,
//!                    status ──▶ Plan (NodePolicies, statuses, Events)
//!                          │
//!                          ▼
//!  controller (Operator): server-side apply of the Plan, error_policy,
//!    leader election, metrics, health
//! ```
//!
//! [`index`] and [`reconcile`] do no I/O, so the tests drive them with plain
//! values; [`controller`] is the only module that talks to the API server,
//! besides [`uninstall`] (`meshguard-operator uninstall`, the chart's
//! pre-delete hook).
//! The semantics (selectors, evaluation, compilation) live in
//! `meshguard-policy`, shared with the offline `meshguard` CLI.

#![forbid(unsafe_code)]

pub mod controller;
pub mod index;
pub mod reconcile;
pub mod uninstall;
