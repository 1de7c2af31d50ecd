//! Compiles the eBPF backend's TC programs (`bpf/meshguard.c`) with clang
//! into `OUT_DIR`, where `backend::ebpf::programs` includes the object.
//! Flags as ../shared/TOOLBOX.md verified: without the multiarch include
//! directory, `asm/types.h` is not found.

use std::{env, path::PathBuf, process::Command};

fn main() -> Result<(), String> {
    const SOURCE: &str = "bpf/meshguard.c";
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "/usr/include/aarch64-linux-gnu",
        _ => "/usr/include/x86_64-linux-gnu",
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let object = out.join("meshguard.bpf.o");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&object)
        .status()
        .map_err(|e| {
            format!("running {clang} for {SOURCE}: {e} (install clang and libbpf-dev: `make deps`)")
        })?;
    if !status.success() {
        return Err(format!("{clang} could not compile {SOURCE} ({status})"));
    }
    Ok(())
}
