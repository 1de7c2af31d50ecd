//! `make demo`: the main job without a cluster. A mesh of the members in
//! `examples/` — each in its own network namespace with a boringtun daemon
//! and the real `meshguard-agent` in file mode — enforcing the policies of
//! `examples/` as `meshguard compile` compiles them. It prints the nodes,
//! then a connectivity matrix measured with real connections next to what
//! `meshguard check` predicts for each cell, then quarantines a node live
//! and measures how long every node took to enforce it. Then it sends HTTP
//! requests through a real Envoy to a PolicyChain of `examples/` served by
//! the agent over ext_proc, each status next to `meshguard check-request`'s
//! prediction. The measured matrix, before and after the quarantine, is
//! also drawn in `demo-matrix.html` (`--matrix-out`). The last line counts
//! the disagreements between prediction and measurement; the exit status
//! is 0 only when there are none.
//!
//! Needs root (network namespaces). Everything it creates is removed at the
//! end, also on Ctrl-C.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_cli::picture;
use meshguard_e2e::{
    l7::EXT_PROC,
    l7_demo, manifests,
    matrix::{self, all_pairs, measure, traffic_of},
    mesh::{Backend, Cleaner, Mesh},
};
use serde_json::Value;

#[derive(Parser)]
#[command(
    about = "A local meshguard mesh in network namespaces: policies, a measured matrix, a live change (root)"
)]
struct Args {
    /// The manifests: MeshNodes (the members) and everything else `meshguard compile` reads.
    #[arg(long, default_value = "examples")]
    examples: PathBuf,
    /// The member quarantined in the live change.
    #[arg(long, default_value = "app-1")]
    quarantine: String,
    /// Probes run at once (a refused probe waits out its 1-1.5 s timeout
    /// doing nothing, so many at once cost little).
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// The PolicyChain (`<namespace>/<name>`) of the L7 section.
    #[arg(long, default_value = "shop/orders-api")]
    chain: String,
    /// Where the measured matrix is drawn (HTML: before and after the
    /// quarantine, each cell measured beside predicted).
    #[arg(long, default_value = "demo-matrix.html")]
    matrix_out: PathBuf,
    /// The agents' packet filter (`DEMO_BACKEND=ebpf make demo`).
    #[arg(long, env = "DEMO_BACKEND", default_value = "iptables", value_parser = ["iptables", "ebpf"])]
    backend: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cleaner: Arc<Mutex<Option<Cleaner>>> = Arc::default();
    on_interrupt(Arc::clone(&cleaner));
    match run(&args, &cleaner) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meshguard-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ctrl-C or SIGTERM: remove the namespaces, then exit (the mesh's own
/// cleanup never runs when the process is interrupted).
fn on_interrupt(cleaner: Arc<Mutex<Option<Cleaner>>>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: removing the demo's namespaces");
        if let Some(cleaner) = cleaner.lock().ok().and_then(|c| c.clone()) {
            cleaner.run();
        }
        std::process::exit(130);
    });
}

/// A member of the demo: its name and labels.
type Member = (String, Vec<(String, String)>);

/// The members, and every other manifest.
fn read_examples(dir: &Path) -> anyhow::Result<(Vec<Member>, Vec<Value>)> {
    let docs = manifests::read_dir(dir)?;
    let members = manifests::mesh_nodes(dir, &docs)?
        .into_iter()
        .map(|(_, name, doc)| {
            let labels = doc["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            (name.to_owned(), labels)
        })
        .collect();
    let others: Vec<Value> = docs
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] != "MeshNode")
        .collect();
    Ok((members, others))
}

fn run(args: &Args, cleaner: &Arc<Mutex<Option<Cleaner>>>) -> anyhow::Result<usize> {
    let (members, mut others) = read_examples(&args.examples)?;
    // The chain's JWKS replaced by a key pair minted now (examples/ has no
    // private key).
    let chain = l7_demo::prepare(&mut others, &args.chain)?;
    let traffic = traffic_of(&others)?;
    let inputs = manifests::stream(&others)?;
    let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    if !names.contains(&args.quarantine) {
        bail!(
            "--quarantine {}: no such member in {}",
            args.quarantine,
            args.examples.display()
        );
    }
    let backend = match args.backend.as_str() {
        "ebpf" => Backend::Ebpf,
        _ => Backend::Iptables,
    };
    println!(
        "meshguard demo: {} members from {}, each in its own network namespace, enforced by the {} backend",
        names.len(),
        args.examples.display(),
        backend.name()
    );
    let started = Instant::now();
    let labels: Vec<Vec<(&str, &str)>> = members
        .iter()
        .map(|(_, l)| l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .collect();
    let nodes: Vec<(&str, &[(&str, &str)])> = members
        .iter()
        .zip(&labels)
        .map(|((n, _), l)| (n.as_str(), l.as_slice()))
        .collect();
    let mut mesh = Mesh::new(&nodes)?;
    mesh.use_backend(backend);
    if let Ok(mut slot) = cleaner.lock() {
        *slot = Some(mesh.cleaner());
    }
    let (tcp, udp) = matrix::ports(&traffic);
    for name in &names {
        mesh.serve(name, &tcp, &udp)?;
    }
    let revisions = mesh.set_policies(&inputs)?;
    mesh.start_agents(&["--ext-proc-listen", &format!("127.0.0.1:{EXT_PROC}")])?;
    mesh.wait_applied(&revisions, Duration::from_secs(60))?;
    println!(
        "mesh up and enforcing in {:.1} s (namespaces {}-*)\n",
        started.elapsed().as_secs_f64(),
        mesh.prefix
    );

    println!("Nodes");
    println!("  {:<10} {:<14} {:<44} peers", "name", "mesh IP", "labels");
    for node in &mesh.nodes {
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let peers: Vec<String> = mesh
            .policy(&node.name)?
            .spec
            .peers
            .iter()
            .map(|p| p.name.clone())
            .collect();
        println!(
            "  {:<10} {:<14} {:<44} {}",
            node.name,
            mesh.mesh_ip(&node.name),
            labels.join(","),
            if peers.is_empty() {
                "(none)".to_owned()
            } else {
                peers.join(" ")
            }
        );
    }

    println!(
        "\nConnectivity, measured (✓ passed, ✗ refused), grouped by the rule `meshguard check` says decides"
    );
    let cells = measure(&mesh, &all_pairs(&names, &traffic), args.parallel)?;
    let mut pictures = vec![matrix::picture(
        &format!("{} as enforced", args.examples.display()),
        &names,
        &cells,
    )];
    let mut disagreements = matrix::print(&cells, None);
    println!(
        "  {} cells, {} allowed, {disagreements} disagreements",
        cells.len(),
        cells.iter().filter(|c| c.measured).count()
    );

    println!(
        "\nLive change: quarantine {} (label meshguard.io/quarantine=true)",
        args.quarantine
    );
    mesh.set_label(&args.quarantine, "meshguard.io/quarantine", Some("true"))?;
    let written = Instant::now();
    let revisions = mesh.set_policies(&inputs)?;
    let converged: BTreeMap<String, Duration> = mesh
        .wait_revisions(
            &revisions,
            Duration::from_millis(5),
            Duration::from_secs(60),
        )
        .context("not enforced everywhere")?
        .into_iter()
        .map(|(name, at)| (name, at.duration_since(written)))
        .collect();
    let mut times: Vec<(&String, &Duration)> = converged.iter().collect();
    times.sort_by_key(|(_, d)| **d);
    let line: Vec<String> = times
        .iter()
        .map(|(n, d)| format!("{n} {:.0} ms", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "  from the state-file write to enforcement: {}",
        line.join(", ")
    );
    let slowest = times
        .last()
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .unwrap_or_default();
    println!("  every node enforcing after {slowest:.0} ms");
    let cells = measure(&mesh, &all_pairs(&names, &traffic), args.parallel)?;
    println!("  connectivity of {} now:", args.quarantine);
    pictures.push(matrix::picture(
        &format!("after quarantining {}", args.quarantine),
        &names,
        &cells,
    ));
    let after = matrix::print(&cells, Some(&args.quarantine));
    let elsewhere = cells
        .iter()
        .filter(|c| {
            c.from != args.quarantine && c.to != args.quarantine && c.predicted != c.measured
        })
        .count();
    if elsewhere > 0 {
        println!("  and {elsewhere} disagreements between the other members:");
        matrix::print(
            &cells
                .into_iter()
                .filter(|c| c.predicted != c.measured)
                .collect::<Vec<_>>(),
            None,
        );
    }
    disagreements += after + elsewhere;
    let page = picture::html("meshguard demo: the mesh measured", &pictures);
    std::fs::write(&args.matrix_out, page)
        .with_context(|| format!("writing {}", args.matrix_out.display()))?;
    let written = std::path::absolute(&args.matrix_out)?;
    println!(
        "\nThe measured matrix, before and after the quarantine, is drawn in {} (open it in a browser; hover over a cell for each flow beside its prediction)",
        written.display()
    );

    println!(
        "\nL7: PolicyChain {} through Envoy, measured beside `meshguard check-request`",
        chain.chain
    );
    disagreements += l7_demo::run(&mut mesh, &chain)?;
    drop(mesh);
    if let Ok(mut slot) = cleaner.lock() {
        *slot = None;
    }
    println!(
        "\nnamespaces removed; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    println!("{}", matrix::summary(disagreements));
    Ok(disagreements)
}
