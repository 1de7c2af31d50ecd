//! Pictures as one HTML page: a table per picture, the deciding rules on
//! hover (`title`), a legend of colours. No script, no external resource:
//! the file opens anywhere, also as a CI artifact.

use std::fmt::Write;

use super::{Picture, State, escape};

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
table.matrix { border-collapse: collapse; margin: 1em 0; }
table.matrix td { width: 1.7em; height: 1.7em; text-align: center; border: 1px solid #fff; cursor: default; }
table.matrix td[data-marked] { outline: 3px solid #1f2a7a; outline-offset: -3px; font-weight: bold; }
table.matrix th { font-weight: normal; font-size: 0.85em; white-space: nowrap; }
table.matrix th.row { text-align: right; padding-right: 0.5em; }
table.matrix th.col { vertical-align: bottom; padding-bottom: 0.3em; }
table.matrix th.col span { writing-mode: vertical-rl; transform: rotate(180deg); }
ul.legend { list-style: none; padding: 0; }
ul.legend li { margin: 0.2em 0; }
ul.legend span { display: inline-block; width: 1.2em; height: 1.2em; vertical-align: middle; margin-right: 0.4em; text-align: center; }
";

pub fn html(title: &str, pictures: &[Picture]) -> String {
    let mut page = String::new();
    // write! to a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}",
        escape(title)
    );
    for state in State::ALL {
        let _ = writeln!(
            page,
            "table.matrix td.{0}, ul.legend span.{0} {{ background: {1}; }}",
            state.name(),
            state.colour()
        );
    }
    let _ = write!(
        page,
        "</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title)
    );
    // One picture: the page's heading is its title.
    let titled = pictures.len() > 1;
    for picture in pictures {
        section(&mut page, picture, titled);
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn section(page: &mut String, picture: &Picture, titled: bool) {
    page.push_str("<section>\n");
    if titled {
        let _ = writeln!(page, "<h2>{}</h2>", escape(&picture.title));
    }
    for line in picture.caption.lines() {
        let _ = writeln!(page, "<p>{}</p>", escape(line));
    }
    page.push_str("<table class=\"matrix\">\n<thead>\n<tr><th></th>");
    for (i, heading) in picture.axis.iter().enumerate() {
        let _ = write!(
            page,
            "<th class=\"col\" data-col=\"{i}\" data-members=\"{}\"><span>{}</span></th>",
            escape(&heading.members.join(" ")),
            escape(&heading.label)
        );
    }
    page.push_str("</tr>\n</thead>\n<tbody>\n");
    let n = picture.axis.len();
    for (row, heading) in picture.axis.iter().enumerate() {
        let _ = write!(
            page,
            "<tr><th class=\"row\" data-row=\"{row}\" data-members=\"{}\">{}</th>",
            escape(&heading.members.join(" ")),
            escape(&heading.label)
        );
        for col in 0..n {
            let shade = picture.cell(row, col);
            let mut hover = format!("{} → {}", heading.label, picture.axis[col].label);
            for line in &shade.lines {
                hover.push('\n');
                hover.push_str(line);
            }
            let _ = write!(
                page,
                "<td class=\"{0}\" data-row=\"{row}\" data-col=\"{col}\" data-state=\"{0}\"{1} title=\"{2}\">{3}</td>",
                shade.state.name(),
                if shade.marked {
                    " data-marked=\"true\""
                } else {
                    ""
                },
                escape(&hover),
                shade.state.glyph()
            );
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n<ul class=\"legend\">\n");
    for state in State::ALL {
        let _ = writeln!(
            page,
            "<li><span class=\"{}\">{}</span>{}</li>",
            state.name(),
            state.glyph(),
            state.meaning()
        );
    }
    if let Some(mark) = &picture.mark {
        let _ = writeln!(
            page,
            "<li><span style=\"outline: 3px solid #1f2a7a; outline-offset: -3px\"></span>{}</li>",
            escape(mark)
        );
    }
    page.push_str("</ul>\n<p>Hover over a cell for what decides it.</p>\n</section>\n");
}
