//! A bearer token of any bytes: refused with 401, never a panic, never a
//! pass (`meshguard_fuzz::token`).
//!
//! Under `cargo fuzz` (`--cfg fuzzing`) libFuzzer drives it. Built any other
//! way (`cargo build --workspace`, `cargo test --all-targets`) it is a
//! replayer instead: `token FILE...` runs each file through the same checks,
//! and with no file it does nothing, so a workspace test run never starts
//! an endless fuzzing session.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshguard_fuzz::token(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    for path in std::env::args_os().skip(1) {
        meshguard_fuzz::token(&std::fs::read(&path)?);
        println!("{}: held", std::path::Path::new(&path).display());
    }
    Ok(())
}
