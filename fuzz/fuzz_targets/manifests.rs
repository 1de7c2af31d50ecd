//! A manifest file of any bytes, through the CLI's loader and, when it
//! loads, the compiler (`meshguard_fuzz::manifests`).
//! The entry point: [`meshguard_fuzz::target`].

#![cfg_attr(fuzzing, no_main)]

meshguard_fuzz::target!(meshguard_fuzz::manifests);
