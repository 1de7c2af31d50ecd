//! The meshguard operator and the offline `meshguard` CLI.
//!
//! ```text
//!  watchers ──▶ index ──▶ compile (pure) ──▶ NodePolicy writer
//!                  └────▶ IPAM, statuses, Events, metrics
//! ```
//!
//! The pure middle is here: [`policy_set`] orders the policies, [`evaluate`]
//! decides one flow (for `check`, `--explain` and in-policy tests),
//! [`compile`] turns everything into one NodePolicy per member. The CLI
//! ([`cli`]) reads manifests from files and calls them; [`index`] and
//! [`reconcile`] are the operator's pure middle, [`controller`] its
//! Kubernetes edge (watchers, writes, leader election, metrics).

#![forbid(unsafe_code)]

pub mod addresses;
pub mod cli;
pub mod compile;
pub mod controller;
pub mod diagnostics;
pub mod evaluate;
pub mod index;
pub mod ipam;
pub mod members;
pub mod policy_set;
pub mod policy_tests;
pub mod ports;
pub mod reconcile;
pub mod secrets;
pub mod selectors;
