//! Network and mount namespaces for test nodes, through iproute2, unshare and
//! nsenter.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use anyhow::{Context, bail};

/// Runs a command on the host; fails with its stderr.
pub fn host(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A node's namespaces: entered together with nsenter.
#[derive(Clone, Debug)]
pub struct Namespaces {
    pub net: String,
    pub mount: PathBuf,
}

impl Namespaces {
    /// `nsenter` arguments that put a command in both namespaces.
    pub fn enter(&self) -> Vec<String> {
        vec![
            format!("--net=/var/run/netns/{}", self.net),
            format!("--mount={}", self.mount.display()),
        ]
    }

    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.args(self.enter()).arg("--").arg(program).args(args);
        command
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| Output {
                // Not started: report it as the shell would, exit status 127.
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: e.to_string().into_bytes(),
            })
    }

    /// Runs and fails with stderr when the command does.
    pub fn check(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(program, args);
        if !output.status.success() {
            bail!(
                "{} {program} {}: {}",
                self.net,
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A directory whose mounts are private, to hold persistent mount namespaces
/// (a bind-mounted `/proc/<pid>/ns/mnt` must not live on a shared mount).
pub fn private_mount_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let shown = dir.display().to_string();
    host("mount", &["--bind", &shown, &shown])?;
    host("mount", &["--make-private", &shown])?;
    Ok(())
}

/// A persistent mount namespace at `file`, with a private tmpfs at
/// `/run/wireguard` (where userspace WireGuard daemons put their sockets).
pub fn mount_namespace(file: &Path) -> anyhow::Result<()> {
    std::fs::write(file, "")?;
    let target = format!("--mount={}", file.display());
    host("unshare", &[&target, "--propagation", "private", "true"])?;
    host(
        "nsenter",
        &[
            &target,
            "--",
            "sh",
            "-c",
            "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard",
        ],
    )?;
    Ok(())
}
