//! HTTP/1.1 load for the L7 benchmark, where `wrk` cannot serve: requests
//! at a fixed rate (wrk runs a closed loop, whose latency figures hide the
//! time a request waited to be sent, "coordinated omission"), and a run of
//! N requests each carrying a header value of its own (N rate-limit keys).
//!
//! Open loop: request `i` is due at `start + i / rate`, and its latency is
//! counted from that instant, not from when a connection got round to it,
//! so a stall shows up in the percentiles instead of slowing the sender.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// What to send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Cycled through by request number.
    pub paths: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// A header whose value is the request's number: a key of its own each.
    pub numbered: Option<String>,
    pub connections: usize,
    pub requests: usize,
    /// Requests per second (open loop); `None`: as fast as answers come.
    pub rate: Option<f64>,
}

/// What came back.
#[derive(Debug)]
pub struct Report {
    pub statuses: BTreeMap<u16, usize>,
    /// Sorted, microseconds.
    pub latencies: Vec<u64>,
    pub seconds: f64,
}

impl Report {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        Duration::from_micros(self.latencies[i])
    }

    pub fn to_json(&self) -> Value {
        json!({
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "seconds": self.seconds,
            "count": self.latencies.len(),
            "p50_us": self.percentile(50.0).as_micros() as u64,
            "p90_us": self.percentile(90.0).as_micros() as u64,
            "p99_us": self.percentile(99.0).as_micros() as u64,
            "max_us": self.latencies.last().copied().unwrap_or_default(),
        })
    }
}

/// Sends the plan's requests over its connections (a thread each: a
/// thread's sleep wakes within tens of µs, an async timer only at the next
/// millisecond) and gathers the answers.
pub fn run(plan: Plan) -> anyhow::Result<Report> {
    if plan.paths.is_empty() || plan.connections == 0 {
        bail!("a load plan needs a path and a connection");
    }
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let gathered: Vec<anyhow::Result<Gathered>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..plan.connections)
            .map(|_| scope.spawn(|| worker(&plan, &next, start)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a load worker panicked")))
            })
            .collect()
    });
    let mut statuses = BTreeMap::new();
    let mut latencies = Vec::with_capacity(plan.requests);
    for result in gathered {
        let (s, l) = result?;
        for (status, n) in s {
            *statuses.entry(status).or_insert(0) += n;
        }
        latencies.extend(l);
    }
    latencies.sort_unstable();
    Ok(Report {
        statuses,
        latencies,
        seconds: start.elapsed().as_secs_f64(),
    })
}

type Gathered = (BTreeMap<u16, usize>, Vec<u64>);

/// One keep-alive connection taking the next request number until all are
/// taken.
fn worker(plan: &Plan, next: &AtomicUsize, start: Instant) -> anyhow::Result<Gathered> {
    let stream =
        TcpStream::connect(plan.addr).with_context(|| format!("connecting to {}", plan.addr))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut statuses = BTreeMap::new();
    let mut latencies = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.requests {
            break;
        }
        let due = match plan.rate {
            Some(rate) => {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                due
            }
            None => Instant::now(),
        };
        let mut request = format!(
            "GET {} HTTP/1.1\r\nhost: bench\r\n",
            plan.paths[i % plan.paths.len()]
        );
        for (k, v) in &plan.headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(name) = &plan.numbered {
            request.push_str(&format!("{name}: {i}\r\n"));
        }
        request.push_str("\r\n");
        writer.write_all(request.as_bytes())?;
        let status = read_response(&mut reader)?;
        latencies.push(due.elapsed().as_micros() as u64);
        *statuses.entry(status).or_insert(0) += 1;
    }
    Ok((statuses, latencies))
}

/// Reads one response (status line, headers, a `content-length` body) and
/// returns its status.
fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            bail!("connection closed inside a response");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("content-length")?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(status)
}
