//! The tables: the same columns printed to the terminal (aligned text) and to index.md
//! (markdown), one table for loaded runs, one for churn, one for idle memory.

use super::row::{Mode, Row, Status};

/// A table of text cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column headings.
    pub headers: Vec<String>,
    /// Rows of cells, as many as there are headings.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headings and rows.
    pub fn new(headers: &[&str], rows: Vec<Vec<String>>) -> Table {
        Table {
            headers: headers.iter().map(|s| s.to_string()).collect(),
            rows,
        }
    }

    /// Aligned text for the terminal: numbers to the right, words to the left; the last column
    /// (the note) is not padded.
    pub fn to_text(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                let cells = self.rows.iter().map(|r| r[c].chars().count());
                cells
                    .chain([self.headers[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..self.headers.len())
            .map(|c| {
                c > 0
                    && self
                        .rows
                        .iter()
                        .all(|r| r[c].is_empty() || looks_numeric(&r[c]))
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                if c + 1 == cells.len() {
                    out.push_str(cell);
                } else if numeric[c] {
                    out.push_str(&format!("{}{cell}  ", " ".repeat(pad)));
                } else {
                    out.push_str(&format!("{cell}{}  ", " ".repeat(pad)));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    /// A markdown (GitHub) table.
    pub fn to_markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = format!(
            "| {} |\n",
            self.headers
                .iter()
                .map(|h| cell(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        out.push_str(&format!("|{}\n", " --- |".repeat(self.headers.len())));
        for row in &self.rows {
            out.push_str(&format!(
                "| {} |\n",
                row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            ));
        }
        out
    }
}

fn looks_numeric(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '≈')
}

/// The table of closed- or open-loop rows.
pub fn load_table(rows: &[&Row]) -> Table {
    let headers = [
        "model",
        "proto",
        "conns",
        "size",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU µs/req",
        "usr+sys",
        "PSS",
        "RSS",
        "mem/conn",
        "thr/proc",
        "csw/req",
        "errors",
        "note",
    ];
    let body = rows
        .iter()
        .map(|r| {
            let size = if r.size == 0 {
                "-".to_string()
            } else {
                bytes(r.size as f64)
            };
            let mut cells = vec![
                r.label(),
                r.protocol.clone(),
                r.connections.to_string(),
                size,
            ];
            cells.extend(measured(r));
            cells.push(note(r));
            cells
        })
        .collect();
    Table::new(&headers, body)
}

/// The table of churn rows: one request per connection, so "per request" is per connection.
pub fn churn_table(rows: &[&Row]) -> Table {
    let headers = [
        "model",
        "proto",
        "slots",
        "size",
        "conn/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU µs/conn",
        "usr+sys",
        "PSS",
        "RSS",
        "mem/conn",
        "thr/proc",
        "csw/conn",
        "errors",
        "note",
    ];
    let mut table = load_table(rows);
    table.headers = headers.iter().map(|s| s.to_string()).collect();
    table
}

/// The classic table (Stevens, UNP Figure 30.1): churn rows with their CPU per connection and
/// that figure less the iterative server's, the process-control CPU.
pub fn classic_table(rows: &[&Row]) -> Table {
    let headers = [
        "design",
        "workers",
        "conn/s",
        "CPU µs/conn",
        "usr+sys",
        "process control µs/conn",
        "thr/proc",
        "csw/conn",
        "errors",
        "note",
    ];
    let body = rows
        .iter()
        .map(|r| {
            let ok = r.status == Status::Ok;
            let all = measured(r);
            vec![
                r.label(),
                r.workers.map(|w| w.to_string()).unwrap_or_default(),
                all[cell::RATE].clone(),
                all[cell::CPU].clone(),
                all[cell::USR_SYS].clone(),
                opt(
                    ok,
                    r.process_control_us_per_connection
                        .map(|v| format!("{v:.1}")),
                ),
                all[cell::TASKS].clone(),
                all[cell::SWITCHES].clone(),
                all[cell::ERRORS].clone(),
                classic_note(r),
            ]
        })
        .collect();
    Table::new(&headers, body)
}

/// The table of idle rows: memory per connection.
pub fn idle_table(rows: &[&Row]) -> Table {
    let headers = [
        "model",
        "proto",
        "conns",
        "PSS none",
        "PSS idle",
        "RSS idle",
        "bytes/conn",
        "thr/proc",
        "note",
    ];
    let body = rows
        .iter()
        .map(|r| {
            let ok = r.status == Status::Ok;
            vec![
                r.label(),
                r.protocol.clone(),
                r.connections.to_string(),
                opt(ok, r.pss_base_bytes.map(|b| bytes(b as f64))),
                opt(ok, r.pss_peak_bytes.map(|b| bytes(b as f64))),
                opt(ok, r.rss_peak_bytes.map(|b| bytes(b as f64))),
                opt(ok, r.bytes_per_connection.map(bytes)),
                opt(
                    ok,
                    r.peak_tasks
                        .map(|t| format!("{}/{}", t.threads, t.processes)),
                ),
                note(r),
            ]
        })
        .collect();
    Table::new(&headers, body)
}

/// The note of a classic row: a design cannot do less than the iterative server, so a
/// difference below zero says the baseline or the row was disturbed, and the reader is told.
fn classic_note(r: &Row) -> String {
    let mut said = note(r);
    if r.process_control_us_per_connection.is_some_and(|d| d < 0.0) {
        if !said.is_empty() {
            said.push_str("; ");
        }
        said.push_str("below the iterative server: noise, or a disturbed baseline");
    }
    said
}

/// Where [`measured`] puts the cells the classic table borrows.
mod cell {
    pub const RATE: usize = 0;
    pub const CPU: usize = 4;
    pub const USR_SYS: usize = 5;
    pub const TASKS: usize = 9;
    pub const SWITCHES: usize = 10;
    pub const ERRORS: usize = 11;
}

/// The measured cells of a loaded row, blank when not measured.
fn measured(r: &Row) -> Vec<String> {
    let ok = r.status == Status::Ok;
    let l = r.latency_us;
    vec![
        opt(ok, r.requests_per_sec.map(count)),
        opt(ok, l.map(|l| micros(l.p50))),
        opt(ok, l.map(|l| micros(l.p99))),
        opt(ok, l.map(|l| micros(l.p999))),
        opt(ok, r.cpu_us_per_request.map(|v| format!("{v:.1}"))),
        opt(
            ok,
            r.cpu_user_us_per_request
                .zip(r.cpu_sys_us_per_request)
                .map(|(u, s)| format!("{u:.1}+{s:.1}")),
        ),
        opt(ok, r.pss_peak_bytes.map(|b| bytes(b as f64))),
        opt(ok, r.rss_peak_bytes.map(|b| bytes(b as f64))),
        opt(ok, r.bytes_per_connection.map(bytes)),
        opt(
            ok,
            r.peak_tasks
                .map(|t| format!("{}/{}", t.threads, t.processes)),
        ),
        opt(
            ok,
            r.context_switches_per_request
                .map(|s| format!("{:.2}/{:.2}", s.voluntary, s.involuntary)),
        ),
        opt(ok, Some(r.errors.total().to_string())),
    ]
}

fn opt(ok: bool, cell: Option<String>) -> String {
    if ok {
        cell.unwrap_or_default()
    } else {
        String::new()
    }
}

/// The note column: why a row is empty, and what to know about a full one.
pub fn note(r: &Row) -> String {
    let mut parts = Vec::new();
    match r.status {
        Status::Ok => {}
        Status::Unreachable => parts.push(format!("unreachable: {}", r.note)),
        Status::Failed => parts.push(format!("failed: {}", r.note)),
        Status::Skipped => parts.push(format!("skipped: {}", r.note)),
    }
    if r.status == Status::Ok && !r.note.is_empty() {
        parts.push(r.note.clone());
    }
    if r.client_bound {
        parts.push(format!(
            "client-bound ({:.0}% CPU)",
            r.client_cpu_percent.unwrap_or(0.0)
        ));
    }
    let e = &r.errors;
    if r.status == Status::Ok && e.total() > 0 {
        let kinds = [
            ("refused", e.refused),
            ("reset", e.reset),
            ("timed out", e.timed_out),
            ("mismatch", e.mismatch),
            ("other", e.other),
        ];
        let said: Vec<String> = kinds
            .iter()
            .filter(|k| k.1 > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        parts.push(format!("errors: {}", said.join(", ")));
    }
    if r.mode == Mode::Open {
        parts.push(format!(
            "open loop at {} req/s",
            r.rate.map(count).unwrap_or_default()
        ));
    }
    parts.join("; ")
}

/// A count with a k/M suffix: `950`, `12.3k`, `1.20M`.
pub fn count(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.2}M", v / 1e6),
        a if a >= 1e4 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

/// Microseconds, with precision for small values: `4.21`, `87.5`, `1204`.
pub fn micros(v: f64) -> String {
    match v.abs() {
        a if a < 10.0 => format!("{v:.2}"),
        a if a < 1000.0 => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

/// Bytes in binary units: `64 B`, `4.0 KiB`, `12.3 MiB`.
pub fn bytes(v: f64) -> String {
    match v.abs() {
        a if a >= (1u64 << 30) as f64 => format!("{:.2} GiB", v / (1u64 << 30) as f64),
        a if a >= (1u64 << 20) as f64 => format!("{:.1} MiB", v / (1u64 << 20) as f64),
        a if a >= 1024.0 => format!("{:.1} KiB", v / 1024.0),
        _ => format!("{v:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers keep the digits that matter at each magnitude.
    #[test]
    fn number_formats() {
        assert_eq!(count(950.0), "950");
        assert_eq!(count(12_345.0), "12.3k");
        assert_eq!(count(1_200_000.0), "1.20M");
        assert_eq!(micros(4.213), "4.21");
        assert_eq!(micros(87.54), "87.5");
        assert_eq!(bytes(64.0), "64 B");
        assert_eq!(bytes(4096.0), "4.0 KiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        assert_eq!(bytes(12.5 * 1048576.0), "12.5 MiB");
    }

    /// The classic table shows the difference, and says so when it is below zero.
    #[test]
    fn classic_rows_show_the_difference() {
        let mut fork = Row::new("fork-per-conn", "echo", Mode::Churn, 5, 4000);
        fork.cpu_us_per_request = Some(250.0);
        fork.process_control_us_per_connection = Some(230.0);
        let mut lock = Row::new("prefork", "echo", Mode::Churn, 5, 4000);
        lock.accept_lock = Some("fcntl".into());
        lock.process_control_us_per_connection = Some(-3.0);
        let t = classic_table(&[&fork, &lock]);
        assert_eq!(t.headers[5], "process control µs/conn");
        assert_eq!(
            (t.rows[0][3].as_str(), t.rows[0][5].as_str()),
            ("250.0", "230.0")
        );
        assert!(t.rows[0][9].is_empty());
        assert_eq!(t.rows[1][0], "prefork (fcntl)");
        assert!(t.rows[1][9].contains("disturbed baseline"));
    }

    /// An unreachable row keeps its place, blank figures and the reason in the note.
    #[test]
    fn unreachable_rows_say_why() {
        let r = Row::new("iterative", "echo", Mode::Closed, 10, 64)
            .with_status(Status::Unreachable, "serves one client at a time");
        let t = load_table(&[&r]);
        let cells = &t.rows[0];
        assert_eq!(cells.len(), t.headers.len());
        assert_eq!(cells[4], "");
        assert_eq!(
            cells.last().map(String::as_str),
            Some("unreachable: serves one client at a time")
        );
        assert!(t.to_markdown().contains("| iterative | echo | 10 |"));
    }
}
