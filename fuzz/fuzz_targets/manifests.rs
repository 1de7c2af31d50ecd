//! A manifest file of any bytes, through the CLI's loader and, when it
//! loads, the compiler (`meshguard_fuzz::manifests`).
//!
//! Under `cargo fuzz` (`--cfg fuzzing`) libFuzzer drives it. Built any other
//! way (`cargo build --workspace`, `cargo test --all-targets`) it is a
//! replayer instead: `token FILE...` runs each file through the same checks,
//! and with no file it does nothing, so a workspace test run never starts
//! an endless fuzzing session.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = meshguard_fuzz::manifests(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    for path in std::env::args_os().skip(1) {
        let _ = meshguard_fuzz::manifests(&std::fs::read(&path)?);
        println!("{}: held", std::path::Path::new(&path).display());
    }
    Ok(())
}
