//! End-to-end harnesses: a multi-node mesh in network namespaces, a real Envoy
//! in front of the agent's ext_proc server, and scripts for a real cluster
//! (`e2e/kind/`). They arrive with the demo and agent issues.

#![forbid(unsafe_code)]
