//! index.html: the report as one self-contained page to open in a browser — the machine and the
//! settings at the top, every table sortable by a click on its header, each column's
//! definition in the header's tooltip, the plots inline as SVG. No network, no external script
//! or style sheet: the file alone is the report.
//!
//! The page is rendered from the same [`Doc`] blocks as index.md, and the tables from the same
//! [`Table`] values, so a column added to a table (or a table to a section) appears in both
//! without touching this file. Sorting reads a `data-v` number that [`sort_key`] parses from each
//! cell's text (`12.3k`, `4.0 KiB`, `5.2+1.1`), and falls back to the text.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use super::doc::{Block, Doc};
use super::table::{self, Table};

/// The page for `doc`, whose plots are read from `dir`; `title` heads it, `facts` (label,
/// value) are shown at the top as the machine and the settings.
pub fn page(
    dir: &Path,
    title: &str,
    facts: &[(&str, Vec<(String, String)>)],
    doc: &Doc,
) -> io::Result<String> {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(title));
    out.push_str("<div class=\"facts\">\n");
    for (heading, pairs) in facts {
        let _ = writeln!(out, "<section><h2>{}</h2>\n<dl>", escape(heading));
        for (k, v) in pairs {
            let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
        }
        out.push_str("</dl></section>\n");
    }
    out.push_str("</div>\n");
    let contents: Vec<&str> = doc
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading(2, text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    if contents.len() > 1 {
        out.push_str("<nav><ol>\n");
        for (i, text) in contents.iter().enumerate() {
            let _ = writeln!(out, "<li><a href=\"#s{i}\">{}</a></li>", escape(text));
        }
        out.push_str("</ol></nav>\n");
    }
    let mut section = 0;
    for b in &doc.blocks {
        match b {
            // The page's own title is above; a level-1 heading of the document is not repeated.
            Block::Heading(1, _) => {}
            Block::Heading(2, text) => {
                let _ = writeln!(out, "<h2 id=\"s{section}\">{}</h2>", escape(text));
                section += 1;
            }
            Block::Heading(level, text) => {
                let l = (*level).clamp(3, 6);
                let _ = writeln!(out, "<h{l}>{}</h{l}>", escape(text));
            }
            Block::Text(text) => {
                let _ = writeln!(out, "<p>{}</p>", inline(text));
            }
            Block::Table { table, rows } => out.push_str(&table_html(table, rows, &[])),
            Block::Marked { table, classes } => out.push_str(&table_html(table, &[], classes)),
            Block::Plot { file, alt } => {
                let svg = fs::read_to_string(dir.join(file))?;
                let _ = writeln!(
                    out,
                    "<figure>{}<figcaption>{}</figcaption></figure>",
                    inline_svg(&svg, alt),
                    escape(alt)
                );
            }
            Block::Definitions(terms) => {
                out.push_str("<dl class=\"terms\">\n");
                for (term, meaning) in terms {
                    let _ = writeln!(
                        out,
                        "<dt><code>{}</code></dt><dd>{}</dd>",
                        escape(term),
                        inline(meaning)
                    );
                }
                out.push_str("</dl>\n");
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", inline(item));
                }
                out.push_str("</ul>\n");
            }
        }
    }
    let _ = write!(
        out,
        "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    Ok(out)
}

/// A sortable table: each header carries its column's definition as a tooltip, each body row
/// the index of its row in results.json (`data-row`), each numeric cell its value (`data-v`),
/// each cell its mark from `classes` (`up`, `down`) if any.
pub fn table_html(table: &Table, rows: &[usize], classes: &[Vec<&str>]) -> String {
    let mut out = String::from("<div class=\"scroll\"><table class=\"sortable\">\n<thead><tr>");
    for h in &table.headers {
        match table::definition(h) {
            Some(d) => {
                let _ = write!(
                    out,
                    "<th title=\"{}\" class=\"defined\">{}</th>",
                    escape(&plain(d)),
                    escape(h)
                );
            }
            None => {
                let _ = write!(out, "<th>{}</th>", escape(h));
            }
        }
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, cells) in table.rows.iter().enumerate() {
        match rows.get(i) {
            Some(r) => {
                let _ = write!(out, "<tr data-row=\"{r}\">");
            }
            None => out.push_str("<tr>"),
        }
        for (j, cell) in cells.iter().enumerate() {
            out.push_str("<td");
            let mark = classes
                .get(i)
                .and_then(|c| c.get(j))
                .filter(|c| !c.is_empty());
            // The note column is prose: it wraps, left-aligned.
            let note = table.headers.get(j).is_some_and(|h| h == "note");
            match (mark, note) {
                (Some(class), _) => {
                    let _ = write!(out, " class=\"{class}\"");
                }
                (None, true) => out.push_str(" class=\"note\""),
                (None, false) => {}
            }
            if let Some(v) = sort_key(cell) {
                let _ = write!(out, " data-v=\"{v}\"");
            }
            let _ = write!(out, ">{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// The number a cell sorts by: `12.3k` is 12 300, `1.20M` 1.2e6, `4.0 KiB` 4096, `5.2+1.1`
/// (user+sys) 6.3, `12/1` (threads/processes) and `0.50/0.02` the first figure, `×1.25` (a
/// ratio) 1.25; `None` for words, so they sort as text.
pub fn sort_key(cell: &str) -> Option<f64> {
    let s = cell.trim().trim_start_matches(['≈', '×']);
    if s.contains('+') {
        let mut sum = 0.0;
        for part in s.split('+') {
            sum += sort_key(part)?;
        }
        return Some(sum);
    }
    let first = s.split('/').next()?.trim();
    let end = first
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(first.len(), |(i, _)| i);
    let (number, unit) = first.split_at(end);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" | "%" | "µs" | "ms" | "s" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * scale)
}

/// The SVG of a plot, ready to sit in the page: without its XML declaration, scaled to the
/// page's width, and labelled for screen readers.
fn inline_svg(svg: &str, alt: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replacen(
        "<svg",
        &format!("<svg role=\"img\" aria-label=\"{}\"", escape(alt)),
        1,
    )
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline markup as plain text (for a tooltip): the backticks and asterisks dropped.
fn plain(s: &str) -> String {
    s.replace(['`', '*'], "")
}

/// Inline markup as HTML: `code`, *emphasis*, `[text](link)`; everything else escaped.
pub fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['`', '*', '[']) {
        out.push_str(&escape(&rest[..i]));
        let (mark, after) = rest[i..].split_at(1);
        let closing = match mark {
            "`" => after.find('`').map(|j| (j, "code")),
            "*" => after.find('*').map(|j| (j, "em")),
            _ => None,
        };
        if let Some((j, tag)) = closing {
            let _ = write!(out, "<{tag}>{}</{tag}>", escape(&after[..j]));
            rest = &after[j + 1..];
            continue;
        }
        if mark == "["
            && let Some(j) = after.find("](")
            && let Some(k) = after[j + 2..].find(')')
        {
            let (text, href) = (&after[..j], &after[j + 2..j + 2 + k]);
            let _ = write!(out, "<a href=\"{}\">{}</a>", escape(href), escape(text));
            rest = &after[j + 3 + k..];
            continue;
        }
        out.push_str(&escape(mark));
        rest = after;
    }
    out.push_str(&escape(rest));
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; --line: #d8dce3; --head: #f3f5f8; --muted: #5b6472; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b; background: #fff; }
main { max-width: 1480px; margin: 0 auto; padding: 18px 24px 60px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p { max-width: 110ch; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f6; padding: 0 3px; border-radius: 3px; }
.facts { display: grid; grid-template-columns: minmax(320px, 2fr) minmax(420px, 3fr); gap: 8px 28px; margin-bottom: 8px; }
.facts section:nth-child(2) dl { grid-template-columns: max-content 1fr max-content 1fr; }
@media (max-width: 900px) { .facts { grid-template-columns: 1fr; } }
.facts h2 { border: 0; margin: 6px 0 4px; padding: 0; font-size: 15px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.facts dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; font-size: 13.5px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
nav ol { columns: 2 420px; margin: 6px 0 0; padding-left: 22px; font-size: 14px; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; width: max-content; min-width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eceef2; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; font-weight: 600; }
th:first-child { background: var(--head); z-index: 1; }
th.defined { text-decoration: underline dotted #8a93a0; text-underline-offset: 3px; cursor: help; }
th[aria-sort="ascending"]::after { content: " ▲"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " ▼"; font-size: 10px; }
td.note { white-space: normal; text-align: left; min-width: 18em; max-width: 44em; color: #333; }
tbody tr:hover td { background: #f7f9fc; }
td.up { background: #e5f4e8; } td.down { background: #fbe6e4; }
figure { margin: 10px 0 22px; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid #eceef2; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
dl.terms { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; font-size: 14px; }
dl.terms dd { margin: 0; }
"#;

/// Sorting: a click on a header sorts its table's body by that column (numbers by `data-v`,
/// the rest as text, empty cells last), a second click reverses it.
const SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var ex = x.textContent === "", ey = y.textContent === "";
        if (ex || ey) { return ex === ey ? 0 : (ex ? 1 : -1); }
        var vx = x.getAttribute("data-v"), vy = y.getAttribute("data-v");
        if (vx !== null && vy !== null) { return dir * (parseFloat(vx) - parseFloat(vy)); }
        return dir * x.textContent.localeCompare(y.textContent);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells sort by what they say, whatever the unit; words do not pretend to be numbers.
    #[test]
    fn sort_keys() {
        assert_eq!(sort_key("950"), Some(950.0));
        assert_eq!(sort_key("12.3k"), Some(12_300.0));
        assert_eq!(sort_key("1.20M"), Some(1_200_000.0));
        assert_eq!(sort_key("4.0 KiB"), Some(4096.0));
        assert_eq!(sort_key("64 B"), Some(64.0));
        assert_eq!(sort_key("-2.0 KiB"), Some(-2048.0));
        assert_eq!(sort_key("5.5+1.5"), Some(7.0));
        assert_eq!(sort_key("12/1"), Some(12.0));
        assert_eq!(sort_key("×1.25"), Some(1.25));
        assert_eq!(sort_key("epoll-lt"), None);
        assert_eq!(sort_key(""), None);
        assert_eq!(sort_key("-"), None);
        assert_eq!(sort_key("10 held"), None);
    }

    /// Markup becomes tags, and nothing a cell or a note holds can open a tag of its own.
    #[test]
    fn inline_markup_and_escaping() {
        assert_eq!(
            inline("see `a<b>` and *this* & [the diff](diff.html)"),
            "see <code>a&lt;b&gt;</code> and <em>this</em> &amp; <a href=\"diff.html\">the diff</a>"
        );
        assert_eq!(inline("2 * 3"), "2 * 3");
        assert_eq!(inline("[not a link"), "[not a link");
        let t = Table::new(
            &["model", "req/s", "note"],
            vec![vec!["<x>".into(), "1.0k".into(), "a \"b\"".into()]],
        );
        let html = table_html(&t, &[7], &[vec!["", "up"]]);
        assert!(html.contains(
            "<tr data-row=\"7\"><td>&lt;x&gt;</td><td class=\"up\" data-v=\"1000\">1.0k</td>"
        ));
        assert!(html.contains("a &quot;b&quot;"));
        assert!(html.contains("title=\"request/response pairs"));
    }
}
