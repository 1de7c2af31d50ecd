//! meshguard's policy semantics, pure: no I/O, no async, no Kubernetes
//! client. The CLI (`meshguard-cli`) feeds it manifests read from files, the
//! operator (`meshguard-operator`) objects watched in a cluster; both get the
//! same verdicts and the same NodePolicies from here.
//!
//! ```text
//!  MeshPolicy ─▶ selectors ─┐                      ┌─▶ evaluate ─▶ policy_tests
//!               ports ─────┼─▶ policy_set ─────────┤         (check, --explain, tests:)
//!  MeshNode ──▶ members ───┘   (evaluation order)  └─▶ compile ─▶ NodePolicySpec per member
//!               ipam (mesh IPs)                         ▲ atoms · peers · filters · node · memo
//!  PolicyChain, Secret, ConfigMap ─▶ secrets ───────────┘ chains
//!  addresses (prefixes, normalisation)   diagnostics (what every stage reports)
//!
//!  Compiled ×2 ─▶ pairs (groups of members alike, the rules between two) ─┬─▶ diff
//!                                                                         └─▶ matrix
//! ```
//!
//! Where each rule of `docs/semantics.md` lives:
//!
//! | rule | module |
//! |---|---|
//! | 1 members are MeshNodes (mesh IP, labels over the Node's) | [`members`], [`ipam`] |
//! | 2 first match decides (priority, name, rule order) | [`policy_set`], [`evaluate`] |
//! | 3 default deny | [`evaluate`], [`compile`] (`filters`) |
//! | 4 audit mode never decides | [`evaluate`], [`compile`] (`filters`) |
//! | 5 replies are allowed | the agent's renderer (this crate only says which flows) |
//! | 6 peers exactly when some traffic is allowed | [`compile`] (`peers`) |
//! | 7 both ends enforce; routed subnets (`local`, `routedIPs`) | [`compile`] (`filters`, `atoms`) |
//! | 8 tests inside policies | [`policy_tests`] |
//! | 9 mistakes never widen access (unknown names, unreadable rules) | [`selectors`], [`policy_set`], [`diagnostics`] |
//! | selectors (`nodes`, `nodeSelector`, `cidrs`, `all`) | [`selectors`], [`addresses`] |
//! | ports and protocols | [`ports`] |
//! | PolicyChains compiled (references resolved, key digests, JWKS checked) | [`compile`] (`chains`), [`secrets`] |
//! | what a PolicyChain answers for a request (docs/l7.md) | [`l7`] |

#![forbid(unsafe_code)]

pub mod addresses;
pub mod compile;
pub mod diagnostics;
pub mod diff;
pub mod evaluate;
pub mod ipam;
pub mod l7;
pub mod matrix;
pub mod members;
mod pairs;
pub mod policy_set;
pub mod policy_tests;
pub mod ports;
pub mod secrets;
pub mod selectors;
