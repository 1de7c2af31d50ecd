//! The picture as one SVG: the grid, then a legend of colours and the
//! deciding rules numbered (each cell shows its number; its `<title>` shows
//! the same lines on hover in a browser).

use std::{collections::HashMap, fmt::Write};

use super::{Picture, State, escape};

const CELL: usize = 26;
/// Rough width of a character at the label size, for the layout.
const CHAR: f64 = 7.2;
const LINE: usize = 16;
const MARGIN: usize = 16;

pub fn svg(picture: &Picture) -> String {
    let n = picture.axis.len();
    let widest = picture
        .axis
        .iter()
        .map(|h| h.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_space = (widest as f64 * CHAR) as usize + MARGIN;
    let caption: Vec<&str> = picture.caption.lines().collect();
    let top = MARGIN + LINE * (2 + caption.len()) + label_space;
    let left = MARGIN + label_space;

    // One number per distinct list of lines, in the order cells are read.
    let mut numbers: HashMap<&[String], usize> = HashMap::new();
    let mut legend: Vec<&[String]> = Vec::new();
    for shade in picture.cells.iter().filter(|s| !s.lines.is_empty()) {
        numbers.entry(&shade.lines).or_insert_with(|| {
            legend.push(&shade.lines);
            legend.len()
        });
    }

    let mut body = String::new();
    // write! to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        body,
        r#"<text x="{MARGIN}" y="{}" class="title">{}</text>"#,
        MARGIN + LINE,
        escape(&picture.title)
    );
    for (i, line) in caption.iter().enumerate() {
        let _ = writeln!(
            body,
            r#"<text x="{MARGIN}" y="{}">{}</text>"#,
            MARGIN + LINE * (2 + i),
            escape(line)
        );
    }
    for (i, heading) in picture.axis.iter().enumerate() {
        let members = escape(&heading.members.join(" "));
        let label = escape(&heading.label);
        let y = top + i * CELL + CELL / 2 + 4;
        let _ = writeln!(
            body,
            r#"<text class="row" data-row="{i}" data-members="{members}" x="{}" y="{y}" text-anchor="end">{label}</text>"#,
            left - 6
        );
        let x = left + i * CELL + CELL / 2 + 4;
        let _ = writeln!(
            body,
            r#"<text class="col" data-col="{i}" data-members="{members}" transform="translate({x},{}) rotate(-90)">{label}</text>"#,
            top - 6
        );
    }
    for row in 0..n {
        for col in 0..n {
            let shade = picture.cell(row, col);
            let (x, y) = (left + col * CELL, top + row * CELL);
            let marked = if shade.marked {
                r#" data-marked="true""#
            } else {
                ""
            };
            let stroke = if shade.marked {
                r##"stroke="#1f2a7a" stroke-width="3""##
            } else {
                r##"stroke="#ffffff" stroke-width="1""##
            };
            let mark = match numbers.get(shade.lines.as_slice()) {
                Some(number) => number.to_string(),
                None => shade.state.glyph().to_owned(),
            };
            let _ = writeln!(
                body,
                r#"<g class="cell" data-row="{row}" data-col="{col}" data-state="{}"{marked}><title>{}</title><rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{}" {stroke}/><text x="{}" y="{}" text-anchor="middle" class="n">{mark}</text></g>"#,
                shade.state.name(),
                escape(&shade.lines.join("\n")),
                shade.state.colour(),
                x + CELL / 2,
                y + CELL / 2 + 4,
            );
        }
    }

    // The legend: colours, the mark, then the numbered rules.
    let mut y = top + n * CELL + MARGIN + LINE;
    let mut widest_legend = 0usize;
    for state in State::ALL {
        let _ = writeln!(
            body,
            r#"<rect x="{MARGIN}" y="{}" width="14" height="14" fill="{}"/><text x="{}" y="{y}">{} {}</text>"#,
            y - 11,
            state.colour(),
            MARGIN + 20,
            state.glyph(),
            state.meaning()
        );
        y += LINE + 2;
    }
    if let Some(mark) = &picture.mark {
        let _ = writeln!(
            body,
            r##"<rect x="{MARGIN}" y="{}" width="14" height="14" fill="none" stroke="#1f2a7a" stroke-width="3"/><text x="{}" y="{y}">{}</text>"##,
            y - 11,
            MARGIN + 20,
            escape(mark)
        );
        y += LINE;
    }
    y += MARGIN;
    if !legend.is_empty() {
        let _ = writeln!(
            body,
            r#"<text x="{MARGIN}" y="{y}" class="title">What decides each numbered cell</text>"#
        );
        y += LINE + 4;
    }
    for (i, lines) in legend.iter().enumerate() {
        for (k, line) in lines.iter().enumerate() {
            let lead = if k == 0 {
                format!("{:>3}  ", i + 1)
            } else {
                "     ".to_owned()
            };
            widest_legend = widest_legend.max(lead.len() + line.chars().count());
            let _ = writeln!(
                body,
                r#"<text x="{MARGIN}" y="{y}" class="legend" data-entry="{}" xml:space="preserve"><tspan>{lead}</tspan><tspan class="line">{}</tspan></text>"#,
                i + 1,
                escape(line)
            );
            y += LINE;
        }
        y += 4;
    }
    let width = (left + n * CELL + MARGIN)
        .max((widest_legend as f64 * CHAR) as usize + 2 * MARGIN)
        .max((picture.title.chars().count() as f64 * CHAR * 1.3) as usize + 2 * MARGIN)
        .max(
            (caption.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * CHAR) as usize
                + 2 * MARGIN,
        );
    let height = y + MARGIN;
    format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">
<style>.title {{ font-size: 15px; font-weight: bold; }} .n {{ font-size: 11px; }} .legend {{ white-space: pre; }}</style>
<rect width="100%" height="100%" fill="#ffffff"/>
{body}</svg>
"##
    )
}
