//! Matrix pictures (`meshguard matrix`, the demo's `demo-matrix.html`) read
//! back by parsers that are not ours: `scripts/matrix_check.py` (lxml for
//! SVG, html5lib for HTML). [`read`] also checks the shape every picture
//! must have: a square grid, one cell per (row, column).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure report

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

use crate::tokens::{repo, venv_tool};

pub struct Picture {
    /// Each row's (and column's) members.
    pub rows: Vec<Vec<String>>,
    /// (row, column) → the cell as the script read it: `state`, `marked`,
    /// `text`, `hover` (and `fill` in SVG).
    pub cells: BTreeMap<(usize, usize), Value>,
    /// SVG: (entry number, line).
    legend: Vec<(usize, String)>,
}

/// Every picture in the file, as the parsers read it; each one checked to
/// be a square grid with one cell per (row, column), no more.
pub fn read(path: &Path) -> Vec<Picture> {
    let run = Command::new(venv_tool("python"))
        .arg(repo().join("scripts/matrix_check.py"))
        .arg(path)
        .output()
        .expect("run scripts/matrix_check.py");
    assert!(
        run.status.success(),
        "{} does not parse: {}",
        path.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let parsed: Value = serde_json::from_slice(&run.stdout).unwrap();
    let mut out = Vec::new();
    for p in parsed["pictures"].as_array().unwrap() {
        let heading = |key: &str| -> Vec<(u64, String, Vec<String>)> {
            p[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let members = h["members"].as_array().unwrap();
                    (
                        h["index"].as_u64().unwrap(),
                        h["label"].as_str().unwrap().to_owned(),
                        members
                            .iter()
                            .map(|m| m.as_str().unwrap().to_owned())
                            .collect(),
                    )
                })
                .collect()
        };
        let (rows, cols) = (heading("rows"), heading("cols"));
        assert_eq!(rows, cols, "rows and columns differ");
        for (i, (index, _, _)) in rows.iter().enumerate() {
            assert_eq!(*index, i as u64, "headings out of order");
        }
        let mut cells = BTreeMap::new();
        for cell in p["cells"].as_array().unwrap() {
            let at = (
                cell["row"].as_u64().unwrap() as usize,
                cell["col"].as_u64().unwrap() as usize,
            );
            assert!(
                at.0 < rows.len() && at.1 < rows.len(),
                "cell {at:?} off the grid"
            );
            assert!(
                cells.insert(at, cell.clone()).is_none(),
                "two cells at {at:?}"
            );
        }
        assert_eq!(cells.len(), rows.len() * rows.len(), "a cell missing");
        out.push(Picture {
            rows: rows.into_iter().map(|(_, _, members)| members).collect(),
            cells,
            legend: p["legend"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    let entry = l["entry"].as_u64().unwrap() as usize;
                    (entry, l["line"].as_str().unwrap().to_owned())
                })
                .collect(),
        });
    }
    out
}

impl Picture {
    /// The deciding lines of a cell: on hover (HTML: after the `from → to`
    /// line); in SVG also in the legend under the cell's number.
    pub fn lines(&self, at: (usize, usize)) -> Vec<String> {
        let cell = &self.cells[&at];
        let hover: Vec<String> = cell["hover"]
            .as_str()
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        if cell.get("fill").is_none() {
            // HTML
            assert!(hover[0].contains(" → "), "{hover:?}");
            return hover[1..].to_vec();
        }
        if let Ok(number) = cell["text"].as_str().unwrap().parse::<usize>() {
            assert_eq!(
                self.legend_entry(number),
                hover,
                "cell {at:?}: legend {number} and hover differ"
            );
        } else {
            assert!(hover.is_empty(), "cell {at:?} has lines but no number");
        }
        hover
    }

    pub fn legend_entry(&self, number: usize) -> Vec<String> {
        self.legend
            .iter()
            .filter(|(entry, _)| *entry == number)
            .map(|(_, line)| line.clone())
            .collect()
    }

    pub fn members(&self) -> Vec<String> {
        let mut all: Vec<String> = self.rows.iter().flatten().cloned().collect();
        all.sort();
        all
    }

    pub fn row_of(&self, member: &str) -> usize {
        let rows: Vec<usize> = (0..self.rows.len())
            .filter(|&r| self.rows[r].iter().any(|m| m == member))
            .collect();
        assert_eq!(rows.len(), 1, "{member} heads {} rows", rows.len());
        rows[0]
    }
}
