//! The randomized soak: random policy sets over a four-node mesh in network
//! namespaces, compiled by `meshguard compile`, enforced by the real agents,
//! and every cell of the measured matrix (every ordered pair, TCP ports and
//! ICMP) compared with `meshguard check`: prediction equals reality. Each
//! measured matrix is also drawn as the demo draws it and read back.
//!
//! A failure prints the seed; `MESHGUARD_SOAK_SEED=<seed>` replays it, and
//! `MESHGUARD_SOAK_ROUNDS` sets how many policy sets one run tries (4).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::time::Duration;

use meshguard_cli::picture;
use meshguard_e2e::{
    matrix::{self, Cell, all_pairs, label, measure},
    mesh::{Backend, Mesh, Traffic},
};
use meshguard_testkit::{
    pictures,
    random_policy::{member_selector, policy},
    rng::Rng,
};

const NODES: [(&str, &[(&str, &str)]); 4] = [
    ("n1", &[("role", "a"), ("zone", "x")]),
    ("n2", &[("role", "a"), ("zone", "y")]),
    ("n3", &[("role", "b"), ("zone", "x")]),
    ("n4", &[("role", "b"), ("zone", "y")]),
];
const PORTS: [u16; 3] = [22, 80, 443];

fn selector(rng: &mut Rng) -> String {
    member_selector(rng, &NODES.map(|(name, _)| name))
}

fn ports(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => String::new(), // all traffic
        1 => "\n    ports: [{ protocol: ICMP }]".into(),
        2 => "\n    ports: [{ protocol: TCP, port: 80, endPort: 443 }]".into(),
        _ => {
            let port = rng.pick(&PORTS);
            format!("\n    ports: [{{ protocol: TCP, port: {port} }}, {{ protocol: ICMP }}]")
        }
    }
}

/// One to four policies of one to three rules each.
fn policies(rng: &mut Rng) -> String {
    (0..=rng.below(4))
        .map(|p| policy(rng, p, selector, ports))
        .collect()
}

fn random_policy_sets_are_enforced_as_predicted(backend: Backend) {
    let seed = std::env::var("MESHGUARD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            u64::from_le_bytes(bytes) | 1
        });
    let rounds: usize = std::env::var("MESHGUARD_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    eprintln!("soak seed {seed} (MESHGUARD_SOAK_SEED={seed} replays it), {rounds} rounds");
    let mut rng = Rng::new(seed);
    let mut mesh = Mesh::new(&NODES).unwrap();
    mesh.use_backend(backend);
    let names: Vec<String> = NODES.iter().map(|(n, _)| (*n).to_owned()).collect();
    for name in &names {
        mesh.serve(name, &PORTS, &[]).unwrap();
    }
    let mut traffic: Vec<Traffic> = PORTS.iter().map(|p| Traffic::Tcp(*p)).collect();
    traffic.push(Traffic::Icmp);
    let flows = all_pairs(&names, &traffic);
    let mut started = false;
    let mut checked = 0;
    for round in 0..rounds {
        let yaml = policies(&mut rng);
        let revisions = mesh.set_policies(&yaml).unwrap();
        if !started {
            mesh.start_agents(&[]).unwrap();
            started = true;
        }
        mesh.wait_applied(&revisions, Duration::from_secs(30))
            .unwrap();
        let mut cells = measure(&mesh, &flows, 48).unwrap();
        let wrong: Vec<String> = cells
            .iter()
            .filter(|c| c.predicted != c.measured)
            .map(|c| {
                format!(
                    "{} -> {} {}: predicted {} ({}), measured {}",
                    c.from,
                    c.to,
                    label(c.traffic),
                    c.predicted,
                    c.decided_by,
                    c.measured
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "seed {seed}, round {round}: {} of {} cells disagree:\n{}\npolicies:\n{yaml}",
            wrong.len(),
            cells.len(),
            wrong.join("\n")
        );
        checked += cells.len();
        drawn_as_measured(&names, &mut cells, &format!("{backend:?}-{round}"));
    }
    eprintln!("{checked} cells over {rounds} random policy sets: prediction equals measurement");
}

/// The demo's picture of a measured matrix, read back by lxml/html5lib:
/// one cell per ordered pair, coloured by what was measured, none
/// outlined (nothing disagreed); then with one measurement flipped, exactly
/// that pair outlined.
fn drawn_as_measured(names: &[String], cells: &mut [Cell], name: &str) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("soak-{name}.html"));
    let read = |cells: &[Cell]| {
        let page = picture::html("soak", &[matrix::picture("soak", names, cells)]);
        std::fs::write(&path, page).unwrap();
        pictures::read(&path).remove(0)
    };
    let shown = read(cells);
    assert_eq!(
        shown.rows,
        names.iter().map(|n| vec![n.clone()]).collect::<Vec<_>>()
    );
    for (row, from) in names.iter().enumerate() {
        for (col, to) in names.iter().enumerate() {
            let measured: Vec<bool> = cells
                .iter()
                .filter(|c| &c.from == from && &c.to == to)
                .map(|c| c.measured)
                .collect();
            let state = match measured.iter().filter(|m| **m).count() {
                _ if from == to => "itself",
                0 => "deny",
                n if n == measured.len() => "allow",
                _ => "partial",
            };
            let cell = &shown.cells[&(row, col)];
            assert_eq!(cell["state"], state, "{from} → {to}");
            assert_eq!(cell["marked"], false, "{from} → {to}");
        }
    }
    cells[0].measured = !cells[0].measured;
    let flipped = read(cells);
    cells[0].measured = !cells[0].measured;
    let marked: Vec<(usize, usize)> = flipped
        .cells
        .iter()
        .filter(|(_, c)| c["marked"] == true)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(
        marked,
        vec![(flipped.row_of(&cells[0].from), flipped.row_of(&cells[0].to))]
    );
}

meshguard_e2e::for_each_backend!(random_policy_sets_are_enforced_as_predicted,);
