//! Test support shared by the operator's, the agent's and the end-to-end
//! tests; only ever a dev-dependency of a product crate.
//!
//! - [`api_server`]: a mocked Kubernetes API server (tower-test): the test
//!   receives each request the code under test makes and answers it.
//! - [`lease`]: a leader-election Lease as the API server keeps it.
//! - [`deploy`]: `deploy/meshguard.yaml` (the chart's default rendering) read
//!   the way RBAC and environment tests check it.
//! - [`tokens`]: key sets and JWTs minted by PyJWT, for the L7 tests.
//! - [`pictures`]: matrix pictures read back by lxml and html5lib.
//! - [`rng`], [`random_policy`]: a seedable generator and the random
//!   selectors the randomized tests draw.

#![forbid(unsafe_code)]

pub mod api_server;
pub mod deploy;
pub mod lease;
pub mod pictures;
pub mod random_policy;
pub mod rng;
pub mod tokens;
