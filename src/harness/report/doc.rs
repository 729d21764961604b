//! The report as a list of blocks — headings, paragraphs, tables, plots — rendered twice: to
//! index.md ([`Doc::to_markdown`]) and to index.html ([`super::html`]). Whatever a section adds
//! (a table with a new column, another plot) appears in both, from the same blocks.

use super::table::Table;

/// One block of the report.
#[derive(Clone, Debug)]
pub enum Block {
    /// A heading: level 1 is the page's title, 2 a section, 3 a part of one.
    Heading(u8, String),
    /// A paragraph. Inline markup: `code`, *emphasis*, `[text](link)`.
    Text(String),
    /// A table; `rows[i]` is the index in results.json of the row that body row `i` shows
    /// (empty for a table that shows no rows of results.json).
    Table {
        /// The cells.
        table: Table,
        /// Indices into the report's rows, one per body row, or none.
        rows: Vec<usize>,
    },
    /// A table whose cells are marked: `classes[i][j]` is `up` (better), `down` (worse) or
    /// empty for body cell (i, j); markdown shows the cells alone, HTML colours them.
    Marked {
        /// The cells.
        table: Table,
        /// A mark per cell.
        classes: Vec<Vec<&'static str>>,
    },
    /// A plot written beside the report.
    Plot {
        /// Its file name in the report's folder.
        file: String,
        /// What it shows.
        alt: String,
    },
    /// Terms and what they mean (the columns' definitions).
    Definitions(Vec<(String, String)>),
    /// A bulleted list, each item with inline markup.
    List(Vec<String>),
}

/// The blocks of one report, in order.
#[derive(Clone, Debug, Default)]
pub struct Doc {
    /// The blocks.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// Adds a block.
    pub fn push(&mut self, block: Block) {
        self.blocks.push(block);
    }

    /// Adds a heading.
    pub fn heading(&mut self, level: u8, text: impl Into<String>) {
        self.push(Block::Heading(level, text.into()));
    }

    /// Adds a paragraph.
    pub fn text(&mut self, text: impl Into<String>) {
        self.push(Block::Text(text.into()));
    }

    /// The table headers used anywhere in the document, each once, in order of appearance.
    pub fn headers(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for b in &self.blocks {
            if let Block::Table { table, .. } | Block::Marked { table, .. } = b {
                for h in &table.headers {
                    if !seen.contains(&h.as_str()) {
                        seen.push(h);
                    }
                }
            }
        }
        seen
    }

    /// The document as markdown (GitHub tables, images beside the file).
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        for b in &self.blocks {
            match b {
                Block::Heading(level, text) => {
                    md.push_str(&format!("{} {text}\n\n", "#".repeat(*level as usize)));
                }
                Block::Text(text) => md.push_str(&format!("{text}\n\n")),
                Block::Table { table, .. } | Block::Marked { table, .. } => {
                    md.push_str(&format!("{}\n", table.to_markdown()));
                }
                Block::Plot { file, alt } => md.push_str(&format!("![{alt}]({file})\n\n")),
                Block::Definitions(terms) => {
                    for (term, meaning) in terms {
                        md.push_str(&format!("- `{term}`: {meaning}\n"));
                    }
                    md.push('\n');
                }
                Block::List(items) => {
                    for item in items {
                        md.push_str(&format!("- {item}\n"));
                    }
                    md.push('\n');
                }
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each block becomes the markdown it stands for, and the headers are listed once each.
    #[test]
    fn blocks_as_markdown() {
        let mut doc = Doc::default();
        doc.heading(2, "Closed loop");
        doc.text("Some `code`.");
        let t = Table::new(
            &["model", "req/s"],
            vec![vec!["poll".into(), "1.0k".into()]],
        );
        doc.push(Block::Table {
            table: t.clone(),
            rows: vec![0],
        });
        doc.push(Block::Table {
            table: t,
            rows: vec![1],
        });
        doc.push(Block::Plot {
            file: "a.svg".into(),
            alt: "A".into(),
        });
        doc.push(Block::Definitions(vec![(
            "req/s".into(),
            "per second".into(),
        )]));
        let md = doc.to_markdown();
        assert!(md.starts_with("## Closed loop\n\nSome `code`.\n\n| model | req/s |"));
        assert!(md.contains("![A](a.svg)\n"));
        assert!(md.contains("- `req/s`: per second\n"));
        assert_eq!(doc.headers(), ["model", "req/s"]);
    }
}
