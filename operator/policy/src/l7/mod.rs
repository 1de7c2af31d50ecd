//! The L7 request evaluator: what a PolicyChain answers for one HTTP
//! request. Pure: no gRPC, no clock, no network. The agent's ext_proc server
//! feeds it what Envoy sends; `meshguard check-request` feeds it flags.
//!
//! ```text
//!  CompiledChain (NodePolicy) ──chain::Chain::prepare──▶ Chain (keys, digests, rates parsed;
//!                                                          refused whole if unusable)
//!  Request + select (x-meshguard-chain | route) ──▶ evaluate(Chain, Request, Context)
//!      steps in order, `when` first:  apiKey · jwt · anyOf (credentials)
//!                                     rateLimit (rate: GCRA, state passed in)
//!      ChainState (per chain, passed in): rate buckets · verified tokens (verified.rs)
//!                                     access · headers
//!      ──▶ Outcome: pass with header changes | refusal (401/403/429/500, step, reason);
//!          Audit mode: the refusal recorded, the request passed
//! ```

pub mod answer;
pub mod chain;
pub mod evaluate;
pub mod jwt;
pub mod keys;
pub mod rate;
pub mod request;
pub mod select;
pub mod state;
pub mod verified;

pub use answer::{HeaderChanges, Outcome, Refusal, StepRef};
pub use chain::{Chain, ChainError};
pub use evaluate::{Context, REASON_HEADER, Unmatched, answer, evaluate};
pub use keys::{KeySet, NoRemoteKeys, RemoteKeys};
pub use rate::RateLimits;
pub use request::{Identity, Request};
pub use select::select;
pub use state::ChainState;
pub use verified::VerifiedTokens;
