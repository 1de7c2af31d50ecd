//! WireGuard's cross-platform userspace API, spoken to a daemon the agent
//! does not own (boringtun, wireguard-go) over `/var/run/wireguard/<iface>.sock`.
//!
//! A small text protocol (`get=1` / `set=1`, `key=value` lines, a blank line,
//! `errno=N`) with sharp edges that this client works around (measured
//! against boringtun, see TOOLBOX.md):
//! - fields carry over from one peer section to the next within a message, so
//!   every section sets every field, and peers without an endpoint come first
//!   (an endpoint cannot be unset);
//! - a key is never removed and added in the same message;
//! - a reply without `errno` is an error, never success.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Device, DeviceState, PeerConfig, PeerState, WireGuardError, hex, unhex32};

/// The socket a userspace daemon opens for an interface.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{interface}.sock"))
}

pub struct Uapi {
    path: PathBuf,
}

impl Uapi {
    pub fn new(path: PathBuf) -> Uapi {
        Uapi { path }
    }

    fn exchange(
        &self,
        request: &str,
        operation: &'static str,
    ) -> Result<Vec<(String, String)>, WireGuardError> {
        let io = |source| WireGuardError::Socket {
            path: self.path.display().to_string(),
            source,
        };
        let mut stream = UnixStream::connect(&self.path).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        stream.write_all(request.as_bytes()).map_err(io)?;
        let mut reader = BufReader::new(stream);
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(io)? == 0 || line == "\n" {
                break;
            }
            reply.push_str(&line);
            if reply.len() > MAX_REPLY {
                return Err(WireGuardError::Unreadable(format!(
                    "a reply to {operation} longer than {MAX_REPLY} bytes"
                )));
            }
        }
        parse_reply(&reply, operation)
    }
}

/// Far more than any reply: a `get` of 10,000 peers is about 5 MB.
pub const MAX_REPLY: usize = 64 << 20;

/// A reply's `key=value` lines, up to the blank line that ends it, with its
/// `errno` checked: a line that is not `key=value`, or no `errno`, is an
/// error, never a shorter reply.
pub fn parse_reply(
    reply: &str,
    operation: &'static str,
) -> Result<Vec<(String, String)>, WireGuardError> {
    let mut lines = Vec::new();
    for line in reply.split('\n') {
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| WireGuardError::Garbled(line.to_owned()))?;
        lines.push((key.to_owned(), value.to_owned()));
    }
    check_errno(&lines, operation)?;
    Ok(lines)
}

fn check_errno(lines: &[(String, String)], operation: &'static str) -> Result<(), WireGuardError> {
    match lines.iter().rev().find(|(k, _)| k == "errno") {
        None => Err(WireGuardError::NoErrno { operation }),
        Some((_, v)) => match v.parse::<i32>() {
            Ok(0) => Ok(()),
            Ok(errno) => Err(WireGuardError::Errno { operation, errno }),
            Err(_) => Err(WireGuardError::Garbled(format!("errno={v}"))),
        },
    }
}

impl Device for Uapi {
    fn get(&mut self) -> Result<DeviceState, WireGuardError> {
        self.exchange("get=1\n\n", "get")
            .and_then(|lines| parse_get(&lines))
    }

    fn configure(
        &mut self,
        private_key: &[u8; 32],
        listen_port: u16,
    ) -> Result<(), WireGuardError> {
        self.exchange(&render_configure(private_key, listen_port), "set interface")
            .map(|_| ())
    }

    fn remove_peers(&mut self, keys: &[[u8; 32]]) -> Result<(), WireGuardError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.exchange(&render_remove(keys), "remove peers")
            .map(|_| ())
    }

    fn add_peers(&mut self, peers: &[PeerConfig]) -> Result<(), WireGuardError> {
        if peers.is_empty() {
            return Ok(());
        }
        self.exchange(&render_add(peers), "add peers").map(|_| ())
    }
}

pub fn render_configure(private_key: &[u8; 32], listen_port: u16) -> String {
    format!(
        "set=1\nprivate_key={}\nlisten_port={listen_port}\n\n",
        hex(private_key)
    )
}

pub fn render_remove(keys: &[[u8; 32]]) -> String {
    let mut out = String::from("set=1\n");
    for key in keys {
        out.push_str(&format!("public_key={}\nremove=true\n", hex(key)));
    }
    out.push('\n');
    out
}

/// Every section complete; peers without an endpoint first, so none inherits one.
pub fn render_add(peers: &[PeerConfig]) -> String {
    let mut ordered: Vec<&PeerConfig> = peers.iter().collect();
    ordered.sort_by_key(|p| p.endpoint.is_some());
    let mut out = String::from("set=1\n");
    for peer in ordered {
        out.push_str(&format!("public_key={}\n", hex(&peer.public_key)));
        if let Some(endpoint) = peer.endpoint {
            out.push_str(&format!("endpoint={endpoint}\n"));
        }
        out.push_str(&format!(
            "persistent_keepalive_interval={}\n",
            peer.persistent_keepalive
        ));
        out.push_str("replace_allowed_ips=true\n");
        for ip in &peer.allowed_ips {
            out.push_str(&format!("allowed_ip={ip}\n"));
        }
    }
    out.push('\n');
    out
}

/// The device as a `get` reply describes it. All of it or an error: a
/// peer whose key cannot be read would be a peer the agent cannot see (and
/// so never removes), and a field of one peer read into the one before
/// would configure the wrong peer. Keys the agent does not use
/// (`last_handshake_time_sec`, `protocol_version`, ...) are passed over.
pub fn parse_get(lines: &[(String, String)]) -> Result<DeviceState, WireGuardError> {
    fn read<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, WireGuardError> {
        value
            .parse()
            .map_err(|_| WireGuardError::Unreadable(format!("{key}={value:?}")))
    }
    let key32 = |key: &str, value: &str| {
        unhex32(value).ok_or_else(|| WireGuardError::Unreadable(format!("{key}={value:?}")))
    };
    let mut state = DeviceState::default();
    for (key, value) in lines {
        let key = key.as_str();
        match key {
            "own_public_key" => state.public_key = Some(key32(key, value)?),
            "listen_port" => state.listen_port = Some(read(key, value)?),
            "public_key" => state.peers.push(PeerState {
                public_key: key32(key, value)?,
                ..Default::default()
            }),
            "endpoint"
            | "allowed_ip"
            | "persistent_keepalive_interval"
            | "rx_bytes"
            | "tx_bytes" => {
                let Some(peer) = state.peers.last_mut() else {
                    return Err(WireGuardError::Unreadable(format!(
                        "{key}={value:?} before any public_key"
                    )));
                };
                match key {
                    "endpoint" => peer.endpoint = Some(read(key, value)?),
                    "allowed_ip" => peer.allowed_ips.push(read(key, value)?),
                    "persistent_keepalive_interval" => {
                        peer.persistent_keepalive = read(key, value)?
                    }
                    "rx_bytes" => peer.rx_bytes = read(key, value)?,
                    _ => peer.tx_bytes = read(key, value)?,
                }
            }
            _ => {}
        }
    }
    Ok(state)
}

/// A `get` reply describing `state`, as a daemon writes one (the fuzz
/// target's round trip: what `parse_get` reads back is `state`).
pub fn render_get(state: &DeviceState) -> String {
    let mut out = String::new();
    if let Some(key) = &state.public_key {
        out.push_str(&format!("own_public_key={}\n", hex(key)));
    }
    if let Some(port) = state.listen_port {
        out.push_str(&format!("listen_port={port}\n"));
    }
    for peer in &state.peers {
        out.push_str(&format!("public_key={}\n", hex(&peer.public_key)));
        if let Some(endpoint) = peer.endpoint {
            out.push_str(&format!("endpoint={endpoint}\n"));
        }
        for ip in &peer.allowed_ips {
            out.push_str(&format!("allowed_ip={ip}\n"));
        }
        out.push_str(&format!(
            "persistent_keepalive_interval={}\nrx_bytes={}\ntx_bytes={}\n",
            peer.persistent_keepalive, peer.rx_bytes, peer.tx_bytes
        ));
    }
    out.push_str("errno=0\n\n");
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn peer(k: u8, endpoint: Option<&str>, keepalive: u16, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: [k; 32],
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            allowed_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            persistent_keepalive: keepalive,
        }
    }

    #[test]
    fn peers_without_endpoint_come_first_and_every_section_is_complete() {
        let text = render_add(&[
            peer(
                1,
                Some("10.0.0.1:51820"),
                25,
                &["100.96.0.1/32", "192.168.0.0/24"],
            ),
            peer(2, None, 0, &["100.96.0.2/32"]),
        ]);
        let k = |b: u8| hex(&[b; 32]);
        assert_eq!(
            text,
            format!(
                "set=1\npublic_key={}\npersistent_keepalive_interval=0\nreplace_allowed_ips=true\nallowed_ip=100.96.0.2/32\npublic_key={}\nendpoint=10.0.0.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=100.96.0.1/32\nallowed_ip=192.168.0.0/24\n\n",
                k(2),
                k(1)
            )
        );
        assert_eq!(
            render_remove(&[[3; 32]]),
            format!("set=1\npublic_key={}\nremove=true\n\n", k(3))
        );
    }

    #[test]
    fn get_answers_parse_and_errno_is_required() {
        let lines: Vec<(String, String)> = "own_public_key=5d60d76a7dd89a1dee86e34b1f8db0bbe1f1a88d8344e0cbfb1ca5ebf0efc72d\nlisten_port=51820\npublic_key=e17cbd7dbdd6404005196eb67d26bafd6268aa1aa756b89187ac4a7a5144f602\nendpoint=10.99.0.2:51820\nallowed_ip=100.96.0.2/32\nlast_handshake_time_sec=1\nrx_bytes=168\ntx_bytes=92\nerrno=0"
            .lines()
            .map(|l| l.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap())
            .collect();
        let state = parse_get(&lines).unwrap();
        assert_eq!(state.listen_port, Some(51820));
        assert_eq!(state.peers.len(), 1);
        assert_eq!(
            state.peers[0].endpoint,
            Some("10.99.0.2:51820".parse().unwrap())
        );
        assert_eq!(
            (state.peers[0].rx_bytes, state.peers[0].tx_bytes),
            (168, 92)
        );
        assert!(check_errno(&lines, "get").is_ok());
        assert!(matches!(
            check_errno(&lines[..lines.len() - 1], "get"),
            Err(WireGuardError::NoErrno { .. })
        ));
        assert!(matches!(
            check_errno(&[("errno".into(), "22".into())], "set"),
            Err(WireGuardError::Errno { errno: 22, .. })
        ));
        assert_eq!(
            parse_get(&parse_reply(&render_get(&state), "get").unwrap()).unwrap(),
            state
        );
    }

    /// What cannot be read fails the whole reply: a peer dropped or a field
    /// moved to another peer would leave the interface wrong and unseen.
    #[test]
    fn a_get_reply_is_read_whole_or_refused() {
        let peer = format!("public_key={}\n", hex(&[7; 32]));
        for bad in [
            format!("public_key=nothex\n{peer}"),
            format!("{peer}endpoint=10.0.0.1\n"),
            format!("{peer}allowed_ip=10.0.0.0/33\n"),
            format!("{peer}persistent_keepalive_interval=-1\n"),
            format!("{peer}rx_bytes=x\n"),
            "allowed_ip=10.0.0.0/8\n".to_owned(),
            "listen_port=70000\n".to_owned(),
        ] {
            let reply = format!("{bad}errno=0\n");
            let lines = parse_reply(&reply, "get").unwrap();
            assert!(
                matches!(parse_get(&lines), Err(WireGuardError::Unreadable(_))),
                "{reply:?}"
            );
        }
        assert!(matches!(
            parse_reply("public_key\nerrno=0\n", "get"),
            Err(WireGuardError::Garbled(_))
        ));
        let known = format!("{peer}last_handshake_time_sec=3\nprotocol_version=1\nerrno=0\n");
        assert_eq!(
            parse_get(&parse_reply(&known, "get").unwrap())
                .unwrap()
                .peers
                .len(),
            1
        );
    }

    /// A daemon that answers one request, for the socket handling.
    fn fake_daemon(reply: &'static str) -> (PathBuf, std::thread::JoinHandle<String>) {
        let path = std::env::temp_dir().join(format!(
            "mg-uapi-{}-{}.sock",
            std::process::id(),
            reply.len()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                request.push_str(&line);
                if line == "\n" {
                    break;
                }
            }
            (&stream).write_all(reply.as_bytes()).unwrap();
            request
        });
        (path, handle)
    }

    #[test]
    fn a_refusal_is_an_error() {
        let (path, daemon) = fake_daemon("errno=22\n\n");
        let err = Uapi::new(path.clone())
            .add_peers(&[peer(1, None, 0, &["100.96.0.1/32"])])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "WireGuard daemon refused add peers: errno 22"
        );
        assert!(daemon.join().unwrap().starts_with("set=1\npublic_key="));
        std::fs::remove_file(path).unwrap();
    }

    /// A daemon that never ends its reply is cut off at [`MAX_REPLY`],
    /// with an error, rather than read into memory without end.
    #[test]
    fn an_endless_reply_is_refused_at_its_bound() {
        let path =
            std::env::temp_dir().join(format!("mg-uapi-{}-endless.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let daemon = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let line = format!("allowed_ip=10.0.0.0/8{}\n", " ".repeat(4000));
            let mut sent = 0;
            // Until the client hangs up.
            while (&stream).write_all(line.as_bytes()).is_ok() {
                sent += line.len();
            }
            sent
        });
        let err = Uapi::new(path.clone()).get().unwrap_err();
        assert!(
            matches!(&err, WireGuardError::Unreadable(m) if m.contains("longer than 67108864 bytes")),
            "{err}"
        );
        let sent = daemon.join().unwrap();
        assert!(sent >= MAX_REPLY, "{sent}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn silence_is_not_success() {
        let (path, daemon) = fake_daemon("\n");
        let err = Uapi::new(path.clone())
            .remove_peers(&[[1; 32]])
            .unwrap_err();
        assert!(matches!(
            err,
            WireGuardError::NoErrno {
                operation: "remove peers"
            }
        ));
        daemon.join().unwrap();
        std::fs::remove_file(path).unwrap();
    }
}
