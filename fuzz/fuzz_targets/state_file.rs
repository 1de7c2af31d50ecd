//! The agent's state file of any bytes, through what the agent does with
//! it before enforcing (`meshguard_fuzz::state_file`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::state_file);
