//! An ext_proc ProcessingRequest of any bytes, through the agent's
//! conversion and chains (`meshguard_fuzz::ext_proc`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::ext_proc);
