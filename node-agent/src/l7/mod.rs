//! PolicyChains served to Envoy over ext_proc: the agent's gRPC edge around
//! `meshguard_policy::l7`, the evaluator `meshguard check-request` runs too.
//!
//! ```text
//!  NodePolicy.spec.chains ──chains::Current::replace──▶ ChainSet (Arc, swapped whole;
//!                                                        rate state kept per unchanged chain)
//!  Envoy ──gRPC stream──▶ server::Processor ──convert──▶ l7::select + l7::answer
//!        ◀── header mutation (pass) | immediate response (refusal) ──┘
//!  jwt steps with a `uri` ──▶ jwks::RemoteJwks (fetched over HTTPS, cached, never empty)
//! ```

pub mod chains;
pub mod convert;
pub mod jwks;
pub mod server;
