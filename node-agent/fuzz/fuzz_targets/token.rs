//! A bearer token of any bytes: refused with 401, never a panic, never a
//! pass (`meshguard_fuzz::token`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshguard_fuzz::token(data));
