//! Real traffic for the dataplane tests, run inside a node's namespaces:
//! TCP and UDP echo servers, one-shot clients, a held TCP connection that
//! reports any hiccup, an HTTP GET for the agent's endpoints, and raw
//! packets counted at the receiver (`flood`, `count`, `pings`).
//! Exit 0 means the traffic went through (or, for `serve`, ran until killed).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use meshguard_e2e::flood::{self, Protocol};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Echo lines on TCP ports and datagrams on UDP ports, until killed.
    /// Prints "ready" once every port is bound.
    Serve {
        #[arg(long, value_delimiter = ',')]
        tcp: Vec<u16>,
        #[arg(long, value_delimiter = ',')]
        udp: Vec<u16>,
        /// Exit after this many seconds: a server started on a remote node
        /// (`kubectl exec`) may outlive the local process that started it.
        #[arg(long)]
        lifetime: Option<u64>,
        /// Exit when standard input closes: the starter (through `kubectl
        /// exec -i` too) stops the server by closing the pipe.
        #[arg(long)]
        stop_on_eof: bool,
    },
    /// Connect, send a line, expect it back.
    Tcp {
        to: SocketAddr,
        #[arg(long, default_value_t = 1500)]
        timeout_ms: u64,
    },
    /// Send a datagram, expect it back.
    Udp {
        to: SocketAddr,
        #[arg(long, default_value_t = 1500)]
        timeout_ms: u64,
    },
    /// Hold a TCP connection for `seconds`, a round trip every 100 ms; prints
    /// "ready" once connected and fails at the first round trip that does not come back.
    Hold {
        to: SocketAddr,
        #[arg(long)]
        seconds: u64,
    },
    /// GET a URL on loopback; prints the status line and body.
    Get { to: SocketAddr, path: String },
    /// Send raw packets of one flow (TCP SYNs, UDP datagrams or ICMP echo
    /// requests, marked) until standard input closes; prints "sent N ...".
    Flood {
        #[arg(long, value_enum)]
        protocol: Protocol,
        #[arg(long)]
        to: Ipv4Addr,
        /// The destination port (TCP, UDP).
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 2000)]
        every_us: u64,
    },
    /// Count a flood's packets arriving from `from` until standard input
    /// closes; prints "ready" once listening, then "... received N ...".
    Count {
        #[arg(long, value_enum)]
        protocol: Protocol,
        #[arg(long)]
        from: Ipv4Addr,
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Echo requests every `every_ms` until standard input closes, then up
    /// to `linger_ms` for the last answers; prints "sent N received M lost [..]".
    Pings {
        to: Ipv4Addr,
        #[arg(long, default_value_t = 20)]
        every_ms: u64,
        #[arg(long, default_value_t = 3000)]
        linger_ms: u64,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve {
            tcp,
            udp,
            lifetime,
            stop_on_eof,
        } => {
            if let Some(seconds) = lifetime {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(seconds));
                    std::process::exit(0);
                });
            }
            if stop_on_eof {
                std::thread::spawn(|| {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    std::process::exit(0);
                });
            }
            serve(&tcp, &udp)
        }
        Command::Tcp { to, timeout_ms } => tcp_once(to, Duration::from_millis(timeout_ms)),
        Command::Udp { to, timeout_ms } => udp_once(to, Duration::from_millis(timeout_ms)),
        Command::Hold { to, seconds } => hold(to, Duration::from_secs(seconds)),
        Command::Get { to, path } => get(to, &path),
        Command::Flood {
            protocol,
            to,
            port,
            every_us,
        } => report(flood::flood(
            protocol,
            to,
            port,
            Duration::from_micros(every_us),
            &flood::stop_on_eof(),
        )),
        Command::Count {
            protocol,
            from,
            port,
        } => report(flood::count(
            protocol,
            from,
            port,
            || {
                println!("ready");
                let _ = std::io::stdout().flush();
            },
            &flood::stop_on_eof(),
        )),
        Command::Pings {
            to,
            every_ms,
            linger_ms,
        } => report(flood::pings(
            to,
            Duration::from_millis(every_ms),
            Duration::from_millis(linger_ms),
            &flood::stop_on_eof(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a raw-packet command's figures, its one line of output.
fn report(figures: std::io::Result<flood::Figures>) -> std::io::Result<()> {
    println!("{}", figures?);
    Ok(())
}

fn serve(tcp: &[u16], udp: &[u16]) -> std::io::Result<()> {
    let mut threads = Vec::new();
    for &port in tcp {
        let listener = bind(port, TcpListener::bind)?;
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = match stream.try_clone() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(writer, "{line}").is_err() {
                            return;
                        }
                    }
                });
            }
        }));
    }
    for &port in udp {
        let socket = bind(port, UdpSocket::bind)?;
        threads.push(std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&buffer[..n], from);
            }
        }));
    }
    println!("ready");
    std::io::stdout().flush()?;
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Binds IPv4 and IPv6 at once (`[::]`, dual-stack), or IPv4 alone where
/// the host has no IPv6.
fn bind<T>(port: u16, bind: impl Fn(SocketAddr) -> std::io::Result<T>) -> std::io::Result<T> {
    bind(SocketAddr::from(([0u16; 8], port))).or_else(|_| bind(SocketAddr::from(([0u8; 4], port))))
}

fn tcp_once(to: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    round_trip(&stream, "probe")
}

fn round_trip(mut stream: &TcpStream, text: &str) -> std::io::Result<()> {
    writeln!(stream, "{text}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.trim_end() == text {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("echo was {line:?}")))
    }
}

fn udp_once(to: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let socket = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(b"probe", to)?;
    let mut buffer = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buffer)?;
    if &buffer[..n] == b"probe" && from == to {
        Ok(())
    } else {
        Err(std::io::Error::other("wrong echo"))
    }
}

fn hold(to: SocketAddr, seconds: Duration) -> std::io::Result<()> {
    // Generous timeouts: this proves the connection survives, not how fast
    // it answers while agents apply and the machine is busy.
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    round_trip(&stream, "0")?;
    println!("ready");
    std::io::stdout().flush()?;
    let started = Instant::now();
    let mut n = 1u64;
    while started.elapsed() < seconds {
        std::thread::sleep(Duration::from_millis(100));
        round_trip(&stream, &n.to_string()).map_err(|e| {
            std::io::Error::other(format!("round trip {n} after {:?}: {e}", started.elapsed()))
        })?;
        n += 1;
    }
    Ok(())
}

fn get(to: SocketAddr, path: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    println!("{}", head.lines().next().unwrap_or_default());
    print!("{body}");
    Ok(())
}
