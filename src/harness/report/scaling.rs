//! A sweep of the server's CPU count (`compare --server-cores`): requests/s and CPU per request
//! against the CPUs, for the models that use more than one, with each worker's share of the
//! connections beside them — where SO_REUSEPORT's hash, EPOLLEXCLUSIVE's wake-ups and a pool's
//! hand-off show.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use super::plots::{self, Line, Panel, XAxis, YScale};
use super::row::{Row, Status};
use super::table::{self, Table};
use crate::harness::family;

/// What the section shows, above its table.
pub const NOTE: &str = "The models that use more than one CPU, at each server CPU count: the \
models with a worker per CPU (epoll-reuseport, epoll-exclusive, tokio) ran one worker per CPU; \
the pools kept their size (a pool's size is how many clients it serves at once) and shared the \
CPUs; a thread or a process per connection went wherever the scheduler put it. *served per \
worker* is the server's own meter: how many connections each worker accepted.";

/// The number of CPUs a row's server ran on, or 0 unpinned.
fn count(r: &Row) -> usize {
    r.server_cpus.as_ref().map_or(0, Vec::len)
}

/// Whether `rows` ran at more than one server CPU count.
pub fn swept(rows: &[&Row]) -> bool {
    rows.iter().map(|r| count(r)).collect::<BTreeSet<_>>().len() > 1
}

/// A row's CPU count as a cell; blank unpinned.
pub fn cpu_count(r: &Row) -> String {
    r.server_cpus
        .as_ref()
        .map(|c| c.len().to_string())
        .unwrap_or_default()
}

/// The per-worker counts as a cell: every count for a few workers, a summary for a pool of
/// a hundred.
pub fn served(counts: &[u64]) -> String {
    if counts.len() <= 16 {
        return counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
    }
    let busy = counts.iter().filter(|&&c| c > 0).count();
    let most = counts.iter().copied().max().unwrap_or(0);
    format!(
        "{} workers: {busy} served any, at most {most} each",
        counts.len()
    )
}

/// The section's table: the scaling models' rows by model, connections and CPUs; with the rows
/// it shows.
pub fn table<'a>(rows: &[&'a Row]) -> (Table, Vec<&'a Row>) {
    let mut shown: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| family::cpu_use(&r.model).scales())
        .collect();
    let order = |r: &Row| rows.iter().position(|x| x.label() == r.label());
    shown.sort_by_key(|r| (order(r), r.connections, count(r)));
    let body = shown
        .iter()
        .map(|r| {
            let ok = r.status == Status::Ok;
            let when = |v: Option<String>| {
                if ok {
                    v.unwrap_or_default()
                } else {
                    String::new()
                }
            };
            vec![
                r.label(),
                r.connections.to_string(),
                cpu_count(r),
                r.workers.map(|w| w.to_string()).unwrap_or_default(),
                when(r.requests_per_sec.map(table::count)),
                when(r.cpu_us_per_request.map(|v| format!("{v:.1}"))),
                when(r.latency_us.map(|l| table::micros(l.p99))),
                when(r.served_per_worker.as_deref().map(served)),
                table::note(r),
            ]
        })
        .collect();
    let headers = [
        "model",
        "conns",
        "CPUs",
        "workers",
        "req/s",
        "CPU µs/req",
        "p99 µs",
        "served per worker",
        "note",
    ];
    (Table::new(&headers, body), shown)
}

/// One figure per connection count: requests/s and CPU µs/request against server CPUs, a
/// line per scaling model. Returns (file, alt) of each.
pub fn plots(
    dir: &Path,
    stem: &str,
    title: &str,
    rows: &[&Row],
) -> io::Result<Vec<(String, String)>> {
    let ok: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.status == Status::Ok && family::cpu_use(&r.model).scales() && count(r) > 0)
        .collect();
    let mut labels: Vec<String> = Vec::new();
    for r in &ok {
        if !labels.contains(&r.label()) {
            labels.push(r.label());
        }
    }
    let conns: BTreeSet<usize> = ok.iter().map(|r| r.connections).collect();
    let x = XAxis {
        desc: "server CPUs",
        log: false,
        format: &|x| format!("{x:.0}"),
    };
    let mut out = Vec::new();
    for n in conns {
        let lines = |value: &dyn Fn(&Row) -> Option<f64>| -> Vec<Line> {
            labels
                .iter()
                .map(|label| {
                    let mut points: Vec<(f64, f64)> = ok
                        .iter()
                        .filter(|r| r.label() == *label && r.connections == n)
                        .filter_map(|r| Some((count(r) as f64, value(r)?)))
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Line {
                        label: label.clone(),
                        points,
                    }
                })
                .filter(|l| !l.points.is_empty())
                .collect()
        };
        let panels = [
            Panel {
                title: "throughput".into(),
                y_desc: "requests/s".into(),
                lines: lines(&|r| r.requests_per_sec),
            },
            Panel {
                title: "server CPU per request".into(),
                y_desc: "CPU µs/request".into(),
                lines: lines(&|r| r.cpu_us_per_request),
            },
        ];
        let file = format!("cpus_{stem}_{n}.svg");
        let alt = format!("Against server CPUs, {n} connections — {title}");
        plots::panels(&dir.join(&file), &alt, &x, &panels, YScale::Own, &|v| {
            table::count(*v)
        })?;
        out.push((file, alt));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report::row::Mode;

    fn row(model: &str, cpus: usize) -> Row {
        let mut r = Row::new(model, "echo", Mode::Closed, 100, 64);
        r.server_cpus = Some((0..cpus).collect());
        r.requests_per_sec = Some(1000.0 * cpus as f64);
        r.cpu_us_per_request = Some(5.0);
        r.served_per_worker = Some(vec![50; cpus]);
        r
    }

    /// A section is a sweep only with two CPU counts or more; the table holds the scaling
    /// models only, each count in order, with the meter's counts.
    #[test]
    fn the_sweep_table() {
        let rows = [row("tokio", 2), row("epoll-lt", 1), row("tokio", 1)];
        let refs: Vec<&Row> = rows.iter().collect();
        assert!(swept(&refs));
        assert!(!swept(&refs[..1]));
        let (t, shown) = table(&refs);
        assert_eq!(shown.len(), 2);
        assert_eq!((t.rows[0][2].as_str(), t.rows[1][2].as_str()), ("1", "2"));
        assert_eq!(t.rows[1][7], "50 50");
        assert_eq!(
            served(&[1; 100]),
            "100 workers: 100 served any, at most 1 each"
        );
    }
}
