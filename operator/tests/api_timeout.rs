//! A request the API server accepts and never answers is abandoned after
//! `--api-read-timeout` and retried: the real operator binary against a
//! black hole (a plain-HTTP listener that reads requests and answers none).
//! Without a read timeout (kube's default) each of its seven watchers would
//! send one list and wait forever.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

#[test]
fn an_unanswered_request_is_abandoned_and_retried() {
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = hole.local_addr().unwrap();
    let requests: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in hole.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                // Read request lines; answer nothing; hold the connection.
                for line in BufReader::new(&stream).lines().map_while(Result::ok) {
                    if let Some(path) = line.strip_prefix("GET ") {
                        let path = path.split(['?', ' ']).next().unwrap_or_default().to_owned();
                        *seen.lock().unwrap().entry(path).or_default() += 1;
                    }
                }
            });
        }
    });
    let dir = std::env::temp_dir().join(format!("mg-api-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut operator = meshguard_testkit::api_server::operator_command(
        env!("CARGO_BIN_EXE_meshguard-operator"),
        &dir,
        &format!("http://{address}"),
        metrics,
    )
    .unwrap()
    .args(["--api-read-timeout", "2s"])
    .spawn()
    .unwrap();
    // 2 s unanswered, then the watch's backoff (0.8 s, then 1.6 s, jittered
    // up to twice): every watcher asks again within 10 s.
    let started = Instant::now();
    let every_watcher_retried = loop {
        let counts = requests.lock().unwrap().clone();
        if counts.len() == 7 && counts.values().all(|&n| n >= 2) {
            break Ok(counts);
        }
        if started.elapsed() > Duration::from_secs(20) || operator.try_wait().unwrap().is_some() {
            break Err(counts);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = operator.kill();
    let _ = operator.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let counts = every_watcher_retried.unwrap_or_else(|counts| {
        panic!("not every watcher abandoned its unanswered list and asked again: {counts:?}")
    });
    eprintln!(
        "every watcher retried within {:.1} s: {counts:?}",
        started.elapsed().as_secs_f64()
    );
}
