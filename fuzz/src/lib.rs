//! What the fuzz targets run, also replayed over their seeds and corpora
//! by `tests/seeds.rs` in `make test`. Each target feeds what meshguard
//! reads from outside to the code that reads it, and checks what must hold
//! for any input — not only that nothing panics:
//!
//! | target | input | the code | what must hold |
//! |---|---|---|---|
//! | `token` | a bearer token | the L7 chains' `jwt` step | always 401 (no input can hold a valid signature) |
//! | `ext_proc` | a `ProcessingRequest` from Envoy | `convert` → `ChainSet::answer` | only answers the chain can give; 400 for what cannot be read |
//! | `manifests` | a manifest file | the CLI's loader, then the compiler | bad input named by file and object; what loads compiles |
//! | `validation` | one object of each kind | schema, CEL and semantic checks | what passes deserializes as the type |
//! | `state_file` | the agent's state file | parse, check, `desired::parse` | a refusal names the state file; what is accepted is enforceable |
//! | `uapi` | a WireGuard daemon's `get` reply | the UAPI client's parser | no reply read partly: all of it, or an error |

#![forbid(unsafe_code)]
// A fuzz harness: a panic is how it reports, and its fixed inputs either
// load or every run fails at once.
#![allow(clippy::expect_used)]

pub mod l7;
pub mod manifests;
pub mod seeds;
pub mod state_file;
pub mod uapi;
pub mod validation;

pub use l7::{ext_proc, token, token_outcome};
// For `target!`, so that the target files need nothing but this crate.
#[doc(hidden)]
pub use libfuzzer_sys;
pub use manifests::manifests;
pub use state_file::state_file;
pub use uapi::uapi;
pub use validation::validation;

/// A fuzz target's entry point, for `fuzz_targets/<name>.rs` (which also
/// says `#![cfg_attr(fuzzing, no_main)]`). Under `cargo fuzz` (`--cfg
/// fuzzing`) libFuzzer drives `$run`. Built any other way (`cargo build
/// --workspace`, `cargo test --all-targets`) the target is a replayer
/// instead: `<name> FILE...` runs each file through the same checks, and
/// with no file it does nothing, so a workspace test run never starts an
/// endless fuzzing session.
#[macro_export]
macro_rules! target {
    ($run:path) => {
        #[cfg(fuzzing)]
        $crate::libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            let _ = $run(data);
        });

        #[cfg(not(fuzzing))]
        fn main() -> std::io::Result<()> {
            for path in std::env::args_os().skip(1) {
                let _ = $run(&std::fs::read(&path)?);
                println!("{}: held", std::path::Path::new(&path).display());
            }
            Ok(())
        }
    };
}
