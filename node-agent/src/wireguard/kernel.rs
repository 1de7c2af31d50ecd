//! The kernel WireGuard module, driven over netlink by iproute2 (`ip link add
//! ... type wireguard`) and wireguard-tools (`wg set`, `wg show dump`).
//!
//! The `wg` tool speaks netlink to the kernel and the UAPI to a userspace
//! daemon, so this device also works (and is tested) against boringtun; in
//! production `--wireguard kernel` uses it where the module is loaded.

use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
};

use base64::{Engine, engine::general_purpose::STANDARD};

use super::{Device, DeviceState, PeerConfig, PeerState, WireGuardError};

pub struct WgTool {
    interface: String,
}

/// Whether the kernel has WireGuard (built in or loaded).
pub fn module_available() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
}

impl WgTool {
    pub fn new(interface: &str) -> WgTool {
        WgTool {
            interface: interface.to_owned(),
        }
    }

    /// Creates the kernel interface when it is missing.
    pub fn ensure_interface(&self) -> Result<(), WireGuardError> {
        let exists = Command::new("ip")
            .args(["link", "show", "dev", &self.interface])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if exists.is_ok_and(|s| s.success()) {
            return Ok(());
        }
        run(
            Command::new("ip").args(["link", "add", "dev", &self.interface, "type", "wireguard"]),
            None,
        )
    }
}

fn run(command: &mut Command, stdin: Option<&str>) -> Result<(), WireGuardError> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = command
        .spawn()
        .map_err(|e| WireGuardError::Kernel(format!("{shown}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| WireGuardError::Kernel(format!("{shown}: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| WireGuardError::Kernel(format!("{shown}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(WireGuardError::Kernel(format!(
            "{shown}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl Device for WgTool {
    fn get(&mut self) -> Result<DeviceState, WireGuardError> {
        let output = Command::new("wg")
            .args(["show", &self.interface, "dump"])
            .output()
            .map_err(|e| WireGuardError::Kernel(format!("wg show: {e}")))?;
        if !output.status.success() {
            return Err(WireGuardError::Kernel(format!(
                "wg show {}: {}",
                self.interface,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(parse_dump(&String::from_utf8_lossy(&output.stdout)))
    }

    fn configure(
        &mut self,
        private_key: &[u8; 32],
        listen_port: u16,
    ) -> Result<(), WireGuardError> {
        // The key goes through stdin, never the command line.
        let port = listen_port.to_string();
        run(
            Command::new("wg").args([
                "set",
                &self.interface,
                "private-key",
                "/dev/stdin",
                "listen-port",
                &port,
            ]),
            Some(&format!("{}\n", STANDARD.encode(private_key))),
        )
    }

    fn remove_peers(&mut self, keys: &[[u8; 32]]) -> Result<(), WireGuardError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut args = vec!["set".to_owned(), self.interface.clone()];
        for key in keys {
            args.extend(["peer".to_owned(), STANDARD.encode(key), "remove".to_owned()]);
        }
        run(Command::new("wg").args(&args), None)
    }

    fn add_peers(&mut self, peers: &[PeerConfig]) -> Result<(), WireGuardError> {
        // One `wg set` per peer: each call is complete, nothing carries over.
        for peer in peers {
            let mut args = vec![
                "set".to_owned(),
                self.interface.clone(),
                "peer".to_owned(),
                STANDARD.encode(peer.public_key),
            ];
            if let Some(endpoint) = peer.endpoint {
                args.extend(["endpoint".to_owned(), endpoint.to_string()]);
            }
            args.extend([
                "persistent-keepalive".to_owned(),
                peer.persistent_keepalive.to_string(),
            ]);
            let ips: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
            args.extend(["allowed-ips".to_owned(), ips.join(",")]);
            run(Command::new("wg").args(&args), None)?;
        }
        Ok(())
    }
}

/// `wg show <iface> dump`: a line for the interface (private key, public
/// key, port, fwmark), then one per peer (public key, preshared key,
/// endpoint, allowed IPs, latest handshake, rx, tx, keepalive), tab-separated.
pub fn parse_dump(text: &str) -> DeviceState {
    let decode = |k: &str| -> Option<[u8; 32]> { STANDARD.decode(k).ok()?.try_into().ok() };
    let mut lines = text.lines();
    let mut state = DeviceState::default();
    if let Some(first) = lines.next() {
        let fields: Vec<&str> = first.split('\t').collect();
        state.public_key = fields.get(1).and_then(|k| decode(k));
        state.listen_port = fields.get(2).and_then(|p| p.parse().ok());
    }
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let Some(public_key) = f.first().and_then(|k| decode(k)) else {
            continue;
        };
        state.peers.push(PeerState {
            public_key,
            endpoint: f.get(2).and_then(|e| e.parse::<SocketAddr>().ok()),
            allowed_ips: f
                .get(3)
                .map(|ips| ips.split(',').filter_map(|ip| ip.parse().ok()).collect())
                .unwrap_or_default(),
            persistent_keepalive: f.get(7).and_then(|k| k.parse().ok()).unwrap_or(0),
            rx_bytes: f.get(5).and_then(|v| v.parse().ok()).unwrap_or(0),
            tx_bytes: f.get(6).and_then(|v| v.parse().ok()).unwrap_or(0),
        });
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_parse() {
        let k = |b: u8| STANDARD.encode([b; 32]);
        let dump = format!(
            "{}\t{}\t51820\toff\n{}\t(none)\t10.99.0.2:51820\t100.96.0.2/32,192.168.0.0/24\t1700000000\t168\t92\toff\n{}\t(none)\t(none)\t100.96.0.3/32\t0\t0\t0\t25\n",
            k(9),
            k(8),
            k(1),
            k(2)
        );
        let state = parse_dump(&dump);
        assert_eq!(
            (state.public_key, state.listen_port),
            (Some([8; 32]), Some(51820))
        );
        assert_eq!(state.peers.len(), 2);
        assert_eq!(
            state.peers[0].endpoint,
            Some("10.99.0.2:51820".parse().unwrap())
        );
        assert_eq!(state.peers[0].allowed_ips.len(), 2);
        assert_eq!(
            (
                state.peers[0].rx_bytes,
                state.peers[0].tx_bytes,
                state.peers[0].persistent_keepalive
            ),
            (168, 92, 0)
        );
        assert_eq!(
            (state.peers[1].endpoint, state.peers[1].persistent_keepalive),
            (None, 25)
        );
    }
}
