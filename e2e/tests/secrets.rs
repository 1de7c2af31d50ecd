//! The secrets scan every mesh runs when it goes (`e2e/src/mesh/secrets.rs`)
//! fails the test that made the mesh: a node's private key written into a
//! log is found when the mesh is dropped, named by what it is (never by
//! value), and the files stay for a look.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::panic::AssertUnwindSafe;

use meshguard_e2e::mesh::Mesh;

#[test]
fn a_secret_a_mesh_wrote_fails_the_test_that_made_it() {
    let mesh = Mesh::new(&[("a", &[])]).unwrap();
    let key = std::fs::read_to_string(mesh.dir.join("a.key")).unwrap();
    std::fs::write(
        mesh.dir.join("a-agent.log"),
        format!("configuring with {}\n", key.trim()),
    )
    .unwrap();
    let dir = mesh.dir.clone();
    let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| drop(mesh)));
    let message = dropped
        .expect_err("the leak went unnoticed")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("the WireGuard private key of a in"),
        "{message}"
    );
    assert!(
        !message.contains(key.trim()),
        "the message repeats the secret"
    );
    assert!(dir.join("a-agent.log").exists(), "the files were not kept");
    std::fs::remove_dir_all(&dir).unwrap();
}
