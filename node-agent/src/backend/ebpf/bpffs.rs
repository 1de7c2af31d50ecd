//! The BPF filesystem the pins live on. Nothing mounts one by default on
//! Debian (nor in a container without `/sys/fs/bpf` mounted in), so the
//! agent mounts it where it is told to keep its pins when it is not there.

use std::path::Path;

use crate::command::{self, CommandError};

/// Mounts a bpffs at `mount_point` unless one is mounted there already.
pub fn ensure(mount_point: &Path) -> Result<(), CommandError> {
    let shown = mount_point.display().to_string();
    let fail = |message: String| CommandError {
        command: format!("mount -t bpf bpf {shown}"),
        message,
    };
    std::fs::create_dir_all(mount_point).map_err(|e| fail(e.to_string()))?;
    let canonical = mount_point
        .canonicalize()
        .map_err(|e| fail(e.to_string()))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| fail(e.to_string()))?;
    if is_mounted(&mounts, &canonical.display().to_string()) {
        return Ok(());
    }
    command::run("mount", &["-t", "bpf", "bpf", &shown], None).map(|_| ())
}

/// Whether `/proc/self/mounts` text lists a bpffs at `path` (mount points
/// there escape spaces and tabs as octal).
fn is_mounted(mounts: &str, path: &str) -> bool {
    let escaped = path
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011");
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let (_, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(escaped.as_str()) && kind == Some("bpf")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bpffs_is_found_only_at_its_own_mount_point() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\nbpf /tmp/a\\040b bpf rw 0 0\ntmpfs /run tmpfs rw 0 0\n";
        assert!(is_mounted(mounts, "/sys/fs/bpf"));
        assert!(is_mounted(mounts, "/tmp/a b"));
        assert!(!is_mounted(mounts, "/sys/fs"));
        assert!(!is_mounted(mounts, "/run"), "not a bpffs");
        assert!(!is_mounted(mounts, "/sys/fs/bpf/meshguard"));
    }
}
