//! A WireGuard daemon's `get` reply of any bytes, through the agent's UAPI
//! client (`meshguard_fuzz::uapi`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::uapi);
