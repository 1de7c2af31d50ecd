//! Running the system tools the agent drives (ip, iptables-restore, ipset,
//! wg): synchronous, with stdin, and failures that name the command and quote
//! what it printed.

use std::{
    io::Write,
    process::{Command, Stdio},
};

#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub struct CommandError {
    pub command: String,
    pub message: String,
}

/// Runs `program args...`, feeding `stdin`; returns stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CommandError> {
    let shown = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let fail = |message: String| CommandError {
        command: shown.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // iptables-restore names the failing line; keep the first few lines.
        let message: Vec<&str> = stderr.lines().take(5).collect();
        Err(fail(format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            message.join(" | ")
        )))
    }
}

/// Whether `program args...` succeeds (for `iptables -C` style checks).
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
