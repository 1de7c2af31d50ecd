//! A connectivity matrix as a picture: a square grid of members (or groups
//! of members), each cell coloured by what the row's flows to the column
//! get, with the deciding rules on hover (HTML, and SVG `<title>`) and in a
//! numbered legend (SVG). `meshguard matrix` draws predictions; the demo
//! draws what it measured beside them. Both give a [`Picture`]; [`svg`]
//! and [`html`] only lay it out.
//!
//! The output is meant to be parsed as well as looked at: every heading
//! carries `data-members` (its member names, space-separated) and every
//! cell `data-row`, `data-col`, `data-state` and, when marked,
//! `data-marked="true"`.

mod html;
mod svg;

pub use html::html;
pub use svg::svg;

/// One grid.
pub struct Picture {
    pub title: String,
    /// What a cell shows and what its mark means, in a sentence or two.
    pub caption: String,
    /// Rows and columns alike, in order.
    pub axis: Vec<Heading>,
    /// `axis.len()²`, row by row (row: from, column: to).
    pub cells: Vec<Shade>,
    /// What a marked cell means (`changes with this edit`), for the legend;
    /// `None` when no cell can be marked.
    pub mark: Option<String>,
}

/// A row's (and column's) heading.
pub struct Heading {
    pub label: String,
    pub members: Vec<String>,
}

/// One cell.
pub struct Shade {
    pub state: State,
    pub marked: bool,
    /// The deciding rules (and anything else worth reading), one per line.
    pub lines: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Every flow of the cell allowed.
    Allow,
    /// Some allowed, some not.
    Partial,
    /// None allowed.
    Deny,
    /// A member with itself: no mesh flow.
    Itself,
}

impl State {
    pub const ALL: [State; 4] = [State::Allow, State::Partial, State::Deny, State::Itself];

    /// The `data-state` value (and CSS class).
    pub fn name(self) -> &'static str {
        match self {
            State::Allow => "allow",
            State::Partial => "partial",
            State::Deny => "deny",
            State::Itself => "itself",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            State::Allow => "every flow allowed",
            State::Partial => "some flows allowed",
            State::Deny => "every flow denied",
            State::Itself => "a member with itself",
        }
    }

    /// Fill colours readable with dark text, told apart also by their glyph.
    fn colour(self) -> &'static str {
        match self {
            State::Allow => "#8fd19e",
            State::Partial => "#ffd27f",
            State::Deny => "#f4a4a4",
            State::Itself => "#e6e6e6",
        }
    }

    fn glyph(self) -> &'static str {
        match self {
            State::Allow => "✓",
            State::Partial => "◐",
            State::Deny => "✗",
            State::Itself => "·",
        }
    }
}

impl Picture {
    fn cell(&self, row: usize, col: usize) -> &Shade {
        &self.cells[row * self.axis.len() + col]
    }
}

/// Escapes text for XML and HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}
