//! The mesh interface's address, MTU and routes, and the routes that keep a
//! missing tunnel from leaking.
//!
//! Every route the agent adds carries route protocol 109 (`proto 109`), so it
//! can list and remove exactly its own. For each prefix reached through the
//! mesh (the mesh CIDR, peers' subnets) there are two routes: one through the
//! interface, and a blackhole behind it (metric 4242). When the interface
//! goes away (the userspace daemon stopped, say), its routes go with it and
//! the blackhole answers: mesh traffic never follows the default route in
//! cleartext.

use std::{collections::BTreeSet, net::IpAddr};

use ipnet::IpNet;
use serde::Deserialize;

use crate::command::{self, CommandError};

pub const ROUTE_PROTOCOL: &str = "109";
pub const BLACKHOLE_METRIC: &str = "4242";

pub struct Netdev {
    pub interface: String,
    pub mtu: u16,
}

/// A route of ours, as `ip -j route show` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Through(IpNet),
    Blackhole(IpNet),
}

#[derive(Deserialize)]
struct JsonRoute {
    dst: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

impl Netdev {
    /// Address (the mesh IP as a host address), MTU, up.
    pub fn configure(&self, mesh_ip: IpAddr) -> Result<(), CommandError> {
        let host = IpNet::from(mesh_ip).to_string();
        let family = if mesh_ip.is_ipv4() { "-4" } else { "-6" };
        let listed = command::run(
            "ip",
            &[family, "-o", "addr", "show", "dev", &self.interface],
            None,
        )?;
        // Addresses other than the mesh IP (a previous mesh IP) go.
        for stale in listed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter(|a| *a != host)
        {
            command::run("ip", &["addr", "del", stale, "dev", &self.interface], None)?;
        }
        if !listed.contains(&format!(" {host} ")) {
            command::run(
                "ip",
                &["addr", "replace", &host, "dev", &self.interface],
                None,
            )?;
        }
        let mtu = self.mtu.to_string();
        command::run(
            "ip",
            &["link", "set", "dev", &self.interface, "mtu", &mtu, "up"],
            None,
        )
        .map(|_| ())
    }

    /// Whether the interface exists (a userspace daemon that stopped takes it along).
    pub fn exists(&self) -> bool {
        command::succeeds("ip", &["link", "show", "dev", &self.interface])
    }

    /// Our routes now in the kernel.
    pub fn routes(&self) -> Result<BTreeSet<Route>, CommandError> {
        let mut out = BTreeSet::new();
        for family in ["-4", "-6"] {
            let json = command::run(
                "ip",
                &[family, "-j", "route", "show", "proto", ROUTE_PROTOCOL],
                None,
            )?;
            let listed: Vec<JsonRoute> = serde_json::from_str(json.trim()).unwrap_or_default();
            for r in listed {
                let dst = if r.dst == "default" {
                    if family == "-4" {
                        "0.0.0.0/0".to_owned()
                    } else {
                        "::/0".to_owned()
                    }
                } else {
                    r.dst.clone()
                };
                let Some(net) = dst
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| dst.parse::<IpAddr>().ok().map(IpNet::from))
                else {
                    continue;
                };
                match (r.kind.as_deref(), r.dev.as_deref()) {
                    (Some("blackhole"), _) => out.insert(Route::Blackhole(net)),
                    (_, Some(dev)) if dev == self.interface => out.insert(Route::Through(net)),
                    _ => false,
                };
            }
        }
        Ok(out)
    }

    /// The routes for `prefixes`: through the interface, and blackholed behind it.
    pub fn wanted(prefixes: &[IpNet]) -> BTreeSet<Route> {
        prefixes
            .iter()
            .flat_map(|p| [Route::Through(p.trunc()), Route::Blackhole(p.trunc())])
            .collect()
    }

    /// Makes our routes exactly `wanted`; returns how many changed.
    pub fn set_routes(&self, wanted: &BTreeSet<Route>) -> Result<usize, CommandError> {
        let have = self.routes()?;
        let mut batch = String::new();
        for route in wanted.difference(&have) {
            batch.push_str(&match route {
                Route::Through(net) => format!("route replace {net} dev {} proto {ROUTE_PROTOCOL}\n", self.interface),
                Route::Blackhole(net) => format!("route replace blackhole {net} proto {ROUTE_PROTOCOL} metric {BLACKHOLE_METRIC}\n"),
            });
        }
        for route in have.difference(wanted) {
            batch.push_str(&match route {
                Route::Through(net) => format!(
                    "route del {net} dev {} proto {ROUTE_PROTOCOL}\n",
                    self.interface
                ),
                Route::Blackhole(net) => format!(
                    "route del blackhole {net} proto {ROUTE_PROTOCOL} metric {BLACKHOLE_METRIC}\n"
                ),
            });
        }
        if batch.is_empty() {
            return Ok(0);
        }
        command::run("ip", &["-batch", "-"], Some(&batch))?;
        Ok(batch.lines().count())
    }

    /// Removes every route of ours.
    pub fn teardown(&self) -> Result<(), CommandError> {
        self.set_routes(&BTreeSet::new()).map(|_| ())
    }
}
