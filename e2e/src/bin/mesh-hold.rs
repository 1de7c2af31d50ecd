//! `mesh-hold`: makes a two-node mesh (namespaces, mounts, a boringtun
//! daemon per node), prints its prefix, and waits to be killed. The
//! leftovers test kills it with SIGKILL, so that nothing of its cleanup
//! runs, and checks that the next mesh sweeps what it left.

use std::io::Write;

use meshguard_e2e::mesh::Mesh;

fn main() -> anyhow::Result<()> {
    let mesh = Mesh::new(&[("a", &[]), ("b", &[])])?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", mesh.prefix)?;
    out.flush()?;
    loop {
        std::thread::park();
    }
}
