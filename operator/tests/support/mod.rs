//! Shared by the operator's tests: cluster objects (MeshNodes, policies,
//! chains as the API server returns them) and the reconciler's settings for
//! the reconcile, controller and offline-cluster tests.
#![allow(dead_code)]

pub mod cluster;
pub mod scripts;
