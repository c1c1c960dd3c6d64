//! [`Table`]: columns of text aligned for a terminal, as `streamhost admin` prints them.

use std::fmt::Write as _;

/// A header and rows, printed with each column as wide as its widest cell and two spaces
/// between columns; the last column is not padded, so long reasons run on.
pub(super) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub(super) fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, each line prefixed with `indent` and ended by a newline.
    pub(super) fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(indent);
            for (n, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if n + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["NAME", "STATE", "REASON"]);
        table.row(vec!["stream-stats".into(), "running".into()]);
        table.row(vec![
            "evil".into(),
            "quarantined".into(),
            "by operator".into(),
        ]);
        assert_eq!(
            table.render("  "),
            "  NAME          STATE        REASON\n  \
             stream-stats  running\n  \
             evil          quarantined  by operator\n"
        );
    }
}
