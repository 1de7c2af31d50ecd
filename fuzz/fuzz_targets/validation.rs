//! A JSON object of any bytes as each of our kinds, through the checks
//! every object passes (`meshguard_fuzz::validation`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::validation);
