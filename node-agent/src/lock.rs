//! One agent per interface, and a teardown that waits for it: the running
//! agent holds an exclusive `flock` on a file (`--agent-lock`), released by
//! the kernel however the process ends. A second agent for the interface
//! waits for the first to stop instead of fighting over its rules and
//! peers; `teardown --wait-for-agent` waits the same way, then holds the
//! lock so no agent starts while it removes everything.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
#[error("the agent lock {path}: {source}")]
pub struct LockError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

impl AgentLock {
    /// Takes the lock at `path` (created, with its directory, when missing),
    /// calling `waiting` once first if another process holds it.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<AgentLock, LockError> {
        let fail = |source| LockError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock().map_err(fail)?;
            }
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
        Ok(AgentLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("meshguard-lock-{}", std::process::id()));
        let path = dir.join("sub/meshguard0.lock");
        let first = AgentLock::acquire(&path, || panic!("nothing held it")).unwrap();
        let (tx, rx) = mpsc::channel();
        let second = std::thread::spawn({
            let path = path.clone();
            move || {
                let lock = AgentLock::acquire(&path, || tx.send("waiting").unwrap()).unwrap();
                (lock, Instant::now())
            }
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("waiting"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!second.is_finished(), "took a lock that was held");
        let released = Instant::now();
        drop(first);
        let (_lock, taken) = second.join().unwrap();
        assert!(taken >= released);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
