//! An ext_proc ProcessingRequest of any bytes, through the agent's
//! conversion and chains (`meshguard_fuzz::ext_proc`).
//!
//! Under `cargo fuzz` (`--cfg fuzzing`) libFuzzer drives it. Built any other
//! way (`cargo build --workspace`, `cargo test --all-targets`) it is a
//! replayer instead: `ext_proc FILE...` runs each file through the same checks,
//! and with no file it does nothing, so a workspace test run never starts
//! an endless fuzzing session.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshguard_fuzz::ext_proc(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    for path in std::env::args_os().skip(1) {
        meshguard_fuzz::ext_proc(&std::fs::read(&path)?);
        println!("{}: held", std::path::Path::new(&path).display());
    }
    Ok(())
}
