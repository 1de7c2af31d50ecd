//! An ext_proc ProcessingRequest of any bytes, through the agent's
//! conversion and chains (`meshguard_fuzz::ext_proc`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshguard_fuzz::ext_proc(data);
});
