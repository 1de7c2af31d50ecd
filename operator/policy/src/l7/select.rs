//! Which chain a request runs: the one named by the `x-meshguard-chain`
//! gRPC metadata when Envoy's route sets it, else the one serving the
//! request's route name. Routes are unique per node (the compiler gives
//! each route to one chain).

use super::chain::Chain;

/// The chain for a request, or why there is none (for `x-meshguard-reason`).
pub fn select<'a>(
    chains: &'a [Chain],
    named: Option<&str>,
    route: Option<&str>,
) -> Result<&'a Chain, String> {
    if let Some(name) = named {
        return chains
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no chain {name} on this node"));
    }
    let Some(route) = route else {
        return Err("the request carries no route name and names no chain".to_owned());
    };
    chains
        .iter()
        .find(|c| c.routes.iter().any(|r| r == route))
        .ok_or_else(|| format!("no chain serves route {route:?}"))
}
