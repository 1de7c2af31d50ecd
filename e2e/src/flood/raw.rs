//! The sockets: sending a flow's packets, counting them at the receiver,
//! and a stream of echo requests that reports each one lost.

use std::{
    collections::BTreeSet,
    io::Read,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use socket2::{Domain, SockAddr, Socket, Type};

use super::packet::{Protocol, echo_request, packet, recognise};

/// The line each command prints when its input closes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub sent: u64,
    pub received: u64,
    /// `pings`: the sequence numbers never answered.
    pub lost: Vec<u16>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} received {} lost {:?}",
            self.sent, self.received, self.lost
        )
    }
}

impl std::str::FromStr for Figures {
    type Err = String;

    /// Reads the line back (the tests read what the commands print).
    fn from_str(line: &str) -> Result<Figures, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |at: usize, name: &str| -> Result<u64, String> {
            (words.get(at) == Some(&name))
                .then(|| words.get(at + 1)?.parse().ok())
                .flatten()
                .ok_or_else(|| format!("not a figures line: {line:?}"))
        };
        let lost_text = line
            .split_once("lost ")
            .map(|(_, l)| l.trim_matches(|c| c == '[' || c == ']' || c == ' '))
            .ok_or_else(|| format!("not a figures line: {line:?}"))?;
        let lost = lost_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| format!("lost: {s:?} in {line:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Figures {
            sent: number(0, "sent")?,
            received: number(2, "received")?,
            lost,
        })
    }
}

/// Set when standard input closes: how the tests stop these commands.
pub fn stop_on_eof() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

fn raw_socket(protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(i32::from(protocol.number()).into()),
    )?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(socket)
}

/// The address this host sends from towards `to` (for the TCP and UDP
/// checksums' pseudo-header): a connected UDP socket's own address.
fn source_towards(to: Ipv4Addr) -> std::io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect((to, 9))?;
    match socket.local_addr()? {
        std::net::SocketAddr::V4(address) => Ok(*address.ip()),
        other => Err(std::io::Error::other(format!("no IPv4 source: {other}"))),
    }
}

/// Sends one packet of the flow every `every` until `stop`. A send the
/// kernel refuses (a filter's EPERM on the way out) still counts as sent:
/// what matters is what arrives.
pub fn flood(
    protocol: Protocol,
    to: Ipv4Addr,
    port: u16,
    every: Duration,
    stop: &AtomicBool,
) -> std::io::Result<Figures> {
    let socket = raw_socket(protocol)?;
    let from = source_towards(to)?;
    let destination = SockAddr::from(SocketAddrV4::new(to, 0));
    let identifier = std::process::id() as u16;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let bytes = packet(protocol, from, to, port, identifier, sent as u32);
        let _ = socket.send_to(&bytes, &destination);
        sent += 1;
        std::thread::sleep(every);
    }
    Ok(Figures {
        sent,
        ..Figures::default()
    })
}

/// Counts the flow's packets from `from` that reach this host (for ICMP,
/// echo requests; `port` is ignored) until `ready` has been printed and
/// `stop` is set.
pub fn count(
    protocol: Protocol,
    from: Ipv4Addr,
    port: u16,
    ready: impl FnOnce(),
    stop: &AtomicBool,
) -> std::io::Result<Figures> {
    let mut socket = raw_socket(protocol)?;
    ready();
    let wanted = match protocol {
        Protocol::Icmp => 8,
        _ => port,
    };
    let mut received = 0u64;
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        if recognise(&buffer[..n]).is_some_and(|s| {
            s.from == from && s.protocol == protocol.number() && s.port_or_type == wanted
        }) {
            received += 1;
        }
    }
    Ok(Figures {
        received,
        ..Figures::default()
    })
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// An echo request to `to` every `every` until `stop`, then `linger` for
/// the last answers; every request never answered is lost. Unlike `ping`,
/// stopping does not lose the request in flight.
pub fn pings(
    to: Ipv4Addr,
    every: Duration,
    linger: Duration,
    stop: &AtomicBool,
) -> std::io::Result<Figures> {
    let mut socket = raw_socket(Protocol::Icmp)?;
    socket.set_read_timeout(Some(Duration::from_millis(1)))?;
    let destination = SockAddr::from(SocketAddrV4::new(to, 0));
    let identifier = std::process::id() as u16;
    let mut outstanding = BTreeSet::new();
    let (mut sent, mut received) = (0u64, 0u64);
    let mut buffer = [0u8; 2048];
    let mut next = Instant::now();
    let mut stopped: Option<Instant> = None;
    loop {
        if stopped.is_none() && stop.load(Ordering::Relaxed) {
            stopped = Some(Instant::now());
        }
        match stopped {
            Some(at) if outstanding.is_empty() || at.elapsed() > linger => break,
            None if Instant::now() >= next => {
                let sequence = sent as u16;
                let request = echo_request(identifier, sequence, super::MARKER);
                socket.send_to(&request, &destination)?;
                outstanding.insert(sequence);
                sent += 1;
                next += every;
            }
            _ => {}
        }
        let n = match socket.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        if let Some(seen) = recognise(&buffer[..n])
            .filter(|s| s.from == to && s.port_or_type == 0 && s.identifier == identifier)
            && outstanding.remove(&seen.sequence)
        {
            received += 1;
        }
    }
    Ok(Figures {
        sent,
        received,
        lost: outstanding.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_back_as_printed() {
        for figures in [
            Figures::default(),
            Figures {
                sent: 1200,
                received: 1197,
                lost: vec![4, 900, 65535],
            },
        ] {
            assert_eq!(figures.to_string().parse::<Figures>(), Ok(figures));
        }
        assert!("sent x received 1 lost []".parse::<Figures>().is_err());
        assert!("received 1".parse::<Figures>().is_err());
    }
}
