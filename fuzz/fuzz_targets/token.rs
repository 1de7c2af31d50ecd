//! A bearer token of any bytes: refused with 401, never a panic, never a
//! pass (`meshguard_fuzz::token`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::token);
