//! A connectivity matrix: flows between members, what `meshguard check`
//! predicts for each, and what the network does. The demo and
//! `meshguard-cluster-check` print one; the soak test asserts that
//! prediction equals measurement.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use meshguard_cli::picture::{Heading, Picture, Shade, State};
use serde_json::Value;

use crate::{mesh::Mesh, probe::Traffic};

/// One cell of the matrix: a flow, what `meshguard check` says, what the
/// network did.
pub struct Cell {
    pub from: String,
    pub to: String,
    pub traffic: Traffic,
    pub predicted: bool,
    pub decided_by: String,
    pub measured: bool,
}

/// The traffic the policies speak of: every single port named (a range by
/// its ends), and ICMP.
pub fn traffic_of<'a>(docs: impl IntoIterator<Item = &'a Value>) -> anyhow::Result<Vec<Traffic>> {
    let mut out = BTreeSet::from([Traffic::Icmp]);
    for doc in docs.into_iter().filter(|d| d["kind"] == "MeshPolicy") {
        for rule in doc["spec"]["rules"].as_array().into_iter().flatten() {
            for port in rule["ports"].as_array().into_iter().flatten() {
                let (Some(number), Some(protocol)) =
                    (port["port"].as_u64(), port["protocol"].as_str())
                else {
                    continue;
                };
                let mut numbers = vec![number];
                numbers.extend(port["endPort"].as_u64());
                for n in numbers {
                    let n = u16::try_from(n)?;
                    match protocol {
                        "TCP" => out.insert(Traffic::Tcp(n)),
                        "UDP" => out.insert(Traffic::Udp(n)),
                        _ => false,
                    };
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

pub fn label(traffic: Traffic) -> String {
    match traffic {
        Traffic::Tcp(port) => format!("tcp/{port}"),
        Traffic::Udp(port) => format!("udp/{port}"),
        Traffic::Icmp => "icmp".into(),
    }
}

/// `meshguard check --flows - -o json` for every flow: one process, one
/// answer per flow, in order.
pub fn predict(
    meshguard: &Path,
    inputs: &Path,
    flows: &[(&str, &str, Traffic)],
) -> anyhow::Result<Vec<(bool, String)>> {
    let mut lines = String::new();
    for (from, to, traffic) in flows {
        let what = match traffic {
            Traffic::Tcp(port) => format!("TCP {port}"),
            Traffic::Udp(port) => format!("UDP {port}"),
            Traffic::Icmp => "ICMP".to_owned(),
        };
        lines.push_str(&format!("{from} {to} {what}\n"));
    }
    let mut child = Command::new(meshguard)
        .arg("check")
        .arg("-f")
        .arg(inputs)
        .args(["--flows", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", meshguard.display()))?;
    // Written from a thread, so that nothing depends on how much `check`
    // reads before it answers (today it reads every flow first).
    let mut stdin = child.stdin.take().context("meshguard check's stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
    let output = child.wait_with_output()?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing the flows panicked"))?;
    // 0: every flow allowed, 1: some denied; anything else is bad input.
    if !matches!(output.status.code(), Some(0 | 1)) || written.is_err() {
        bail!(
            "meshguard check --flows: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut out = Vec::with_capacity(flows.len());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let answer: Value = serde_json::from_str(line)
            .with_context(|| format!("meshguard check answered {line:?}"))?;
        let decided_by = match (answer["policy"].as_str(), &answer["rule"]) {
            (Some(policy), Value::String(rule)) => format!("{policy}/{rule}"),
            (Some(policy), rule) => format!("{policy}/{rule}"),
            (None, _) => "default deny".into(),
        };
        out.push((answer["verdict"] == "Allow", decided_by));
    }
    if out.len() != flows.len() {
        bail!(
            "meshguard check answered {} of {} flows",
            out.len(),
            flows.len()
        );
    }
    Ok(out)
}

/// One line per pair: the measured cells grouped by verdict and deciding
/// rule; a disagreement is marked `!!`. With `only`, the pairs that member
/// is part of. Returns the disagreements printed.
pub fn print(cells: &[Cell], only: Option<&str>) -> usize {
    let mut pairs: BTreeMap<(&str, &str), Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        if only.is_some_and(|n| cell.from != n && cell.to != n) {
            continue;
        }
        pairs.entry((&cell.from, &cell.to)).or_default().push(cell);
    }
    let mut disagreements = 0;
    for ((from, to), cells) in pairs {
        let mut groups: BTreeMap<(bool, &str), Vec<String>> = BTreeMap::new();
        let mut wrong = Vec::new();
        for cell in cells {
            if cell.predicted != cell.measured {
                disagreements += 1;
                wrong.push(format!(
                    "!! {} predicted {} ({}), measured {}",
                    label(cell.traffic),
                    verdict(cell.predicted),
                    cell.decided_by,
                    verdict(cell.measured)
                ));
            }
            groups
                .entry((cell.measured, &cell.decided_by))
                .or_default()
                .push(label(cell.traffic));
        }
        let text: Vec<String> = groups
            .iter()
            .rev()
            .map(|((allowed, by), flows)| {
                format!(
                    "{} {} ({by})",
                    if *allowed { "✓" } else { "✗" },
                    flows.join(" ")
                )
            })
            .collect();
        println!("  {from:>10} → {to:<10} {}", text.join("  "));
        for line in wrong {
            println!("  {:>10}   {line}", "");
        }
    }
    disagreements
}

/// The measured matrix as a picture (`meshguard matrix`'s drawing): one
/// cell per ordered pair of `members`, coloured by what the network let
/// through, outlined where that is not what `meshguard check` predicted;
/// the hover text lists each flow, measured beside predicted.
pub fn picture(title: &str, members: &[String], cells: &[Cell]) -> Picture {
    let mut pairs: BTreeMap<(&str, &str), Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        pairs.entry((&cell.from, &cell.to)).or_default().push(cell);
    }
    let mut shades = Vec::with_capacity(members.len() * members.len());
    for from in members {
        for to in members {
            let measured = pairs.get(&(from.as_str(), to.as_str()));
            let Some(measured) = measured.filter(|_| from != to) else {
                shades.push(Shade {
                    state: State::Itself,
                    marked: false,
                    lines: Vec::new(),
                });
                continue;
            };
            let passed = measured.iter().filter(|c| c.measured).count();
            let lines = measured
                .iter()
                .map(|c| {
                    format!(
                        "{}{}: {}, predicted {} ({})",
                        if c.predicted == c.measured {
                            ""
                        } else {
                            "DISAGREES "
                        },
                        label(c.traffic),
                        if c.measured { "passed" } else { "refused" },
                        verdict(c.predicted),
                        c.decided_by
                    )
                })
                .collect();
            shades.push(Shade {
                state: match passed {
                    0 => State::Deny,
                    n if n == measured.len() => State::Allow,
                    _ => State::Partial,
                },
                marked: measured.iter().any(|c| c.predicted != c.measured),
                lines,
            });
        }
    }
    let flows: BTreeSet<String> = cells.iter().map(|c| label(c.traffic)).collect();
    Picture {
        title: title.to_owned(),
        caption: format!(
            "Each cell: what the network did with the flows from its row to its column ({}), measured with real connections through the agents; its hover text lists each flow beside what meshguard check predicted.",
            flows.into_iter().collect::<Vec<_>>().join(", ")
        ),
        axis: members
            .iter()
            .map(|m| Heading {
                label: m.clone(),
                members: vec![m.clone()],
            })
            .collect(),
        cells: shades,
        mark: Some("measured is not what meshguard check predicted".to_owned()),
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// The closing line of a matrix run, the same wherever it is measured.
pub fn summary(disagreements: usize) -> String {
    format!("disagreements between meshguard check and the network: {disagreements}")
}

/// The TCP and the UDP ports among `traffic`: what the servers listen on.
pub fn ports(traffic: &[Traffic]) -> (Vec<u16>, Vec<u16>) {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for t in traffic {
        match t {
            Traffic::Tcp(port) => tcp.push(*port),
            Traffic::Udp(port) => udp.push(*port),
            Traffic::Icmp => {}
        }
    }
    (tcp, udp)
}

/// Every ordered pair of distinct members, for every traffic.
pub fn all_pairs<'a>(
    members: &'a [String],
    traffic: &[Traffic],
) -> Vec<(&'a str, &'a str, Traffic)> {
    let mut flows = Vec::new();
    for from in members {
        for to in members.iter().filter(|to| *to != from) {
            for t in traffic {
                flows.push((from.as_str(), to.as_str(), *t));
            }
        }
    }
    flows
}

/// Predicts every flow with `meshguard check` on the mesh's inputs, then
/// measures it, `parallel` probes at a time; an unexpected refusal is
/// probed twice.
pub fn measure(
    mesh: &Mesh,
    flows: &[(&str, &str, Traffic)],
    parallel: usize,
) -> anyhow::Result<Vec<Cell>> {
    let predictions = predict(mesh.meshguard_bin(), &mesh.dir.join("in"), flows)?;
    // The first packet to a peer starts a WireGuard handshake; let every
    // predicted-allowed flow pass once before measuring (a pair allowed
    // only ICMP or UDP has a peer too).
    let warm: Vec<(&str, &str, Traffic)> = flows
        .iter()
        .zip(&predictions)
        .filter(|(_, (allowed, _))| *allowed)
        .map(|(flow, _)| *flow)
        .collect();
    if mesh.warm_up(&warm, Duration::from_secs(30)).is_err() {
        eprintln!("  (some predicted-allowed flows did not pass while warming up: see the matrix)");
    }
    let mut measured = mesh.probe_all(flows, parallel)?;
    confirm_refusals(&predictions, &mut measured, |again| {
        let retried: Vec<(&str, &str, Traffic)> = again.iter().map(|&i| flows[i]).collect();
        mesh.probe_all(&retried, parallel)
    })?;
    Ok(cells(flows, predictions, measured))
}

/// Probes once more (through `probe`, given the indices) every refusal the
/// prediction does not expect, before it counts as a disagreement: one
/// probe among many on a busy machine can time out on an allowed flow. An
/// unexpected pass is never probed again: a leak is not transient. Says
/// how many passed the second time, so that flakiness stays visible.
pub fn confirm_refusals(
    predictions: &[(bool, String)],
    measured: &mut [bool],
    probe: impl FnOnce(&[usize]) -> anyhow::Result<Vec<bool>>,
) -> anyhow::Result<()> {
    let again: Vec<usize> = (0..measured.len())
        .filter(|&i| predictions[i].0 && !measured[i])
        .collect();
    if again.is_empty() {
        return Ok(());
    }
    let second = probe(&again)?;
    let passed = second.iter().filter(|ok| **ok).count();
    for (i, ok) in again.into_iter().zip(second) {
        measured[i] = ok;
    }
    if passed > 0 {
        eprintln!("  ({passed} predicted-allowed flows passed only when probed a second time)");
    }
    Ok(())
}

/// The cells of `flows`, from the predictions and measurements in their order.
pub fn cells(
    flows: &[(&str, &str, Traffic)],
    predictions: Vec<(bool, String)>,
    measured: Vec<bool>,
) -> Vec<Cell> {
    flows
        .iter()
        .zip(predictions)
        .zip(measured)
        .map(
            |(((from, to, traffic), (predicted, decided_by)), measured)| Cell {
                from: (*from).to_owned(),
                to: (*to).to_owned(),
                traffic: *traffic,
                predicted,
                decided_by,
                measured,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn only_unexpected_refusals_are_probed_again() {
        let predictions: Vec<(bool, String)> = [true, false, true, true]
            .map(|allowed| (allowed, "p/r".to_owned()))
            .to_vec();
        // 0: allowed, refused once; 1: denied but passed (a leak);
        // 2: allowed and passed; 3: allowed, refused twice.
        let mut measured = vec![false, true, true, false];
        let mut asked = Vec::new();
        confirm_refusals(&predictions, &mut measured, |again| {
            asked = again.to_vec();
            Ok(vec![true, false])
        })
        .unwrap();
        assert_eq!(asked, [0, 3]);
        assert_eq!(measured, [true, true, true, false]);

        let mut all_expected = vec![true, false, true, true];
        confirm_refusals(&predictions, &mut all_expected, |_| {
            panic!("nothing to probe again")
        })
        .unwrap();
    }
}
