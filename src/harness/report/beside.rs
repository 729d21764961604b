//! The busy-beside-idle part of the report: per series (protocol, size, busy connections,
//! pipelining, pacing) a summary — each model's CPU per request against its own with no idle
//! connection — and the full table, each figure beside its ratio; how far the repeats spread;
//! and two plots, server CPU per request and p99 against the connections held.

use std::io;
use std::path::Path;

use super::Group;
use super::plots::{self, Line, XAxis};
use super::row::{Mode, Row, Status};
use super::table::{self, Table};
use crate::harness::compare::beside::same_series;

/// Whether a row belongs to the busy-beside-idle sweep alone: it had idle connections beside
/// its busy ones. (Its K = 0 baseline is a plain row, and stays in the plain tables too.)
pub fn owns(r: &Row) -> bool {
    r.idle_beside.is_some_and(|k| k > 0) && !super::rates::owns(r)
}

/// Whether two rows of the sweep belong to one group: everything but the model and K alike.
fn alike(a: &Row, b: &Row) -> bool {
    a.protocol == b.protocol
        && a.size == b.size
        && a.connections == b.connections
        && a.pipeline == b.pipeline
        && a.mode == b.mode
        && a.rate == b.rate
}

fn group_title(g: &Group) -> String {
    let r = g.first();
    let what = super::carried(&r.protocol, r.size);
    let pacing = match (r.mode, r.rate) {
        (Mode::Open, Some(rate)) => format!("open loop at {} req/s", table::count(rate)),
        _ => "closed loop".to_string(),
    };
    let pipelined = match r.pipeline {
        1 => String::new(),
        d => format!(", {d} pipelined per connection"),
    };
    format!(
        "{what}, {} busy connections ({pacing}{pipelined}) beside K idle ones",
        r.connections
    )
}

fn stem(g: &Group) -> String {
    let r = g.first();
    let mut stem = match r.size {
        0 => r.protocol.clone(),
        size => format!("{}_{size}", r.protocol),
    };
    stem.push_str(&format!("_c{}", r.connections));
    if r.pipeline > 1 {
        stem.push_str(&format!("_p{}", r.pipeline));
    }
    if let Some(rate) = r.rate {
        stem.push_str(&format!("_r{rate:.0}"));
    }
    stem
}

/// The idle counts, in increasing order.
fn counts(g: &Group) -> Vec<usize> {
    let mut ks: Vec<usize> = g.rows.iter().filter_map(|r| r.idle_beside).collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

fn groups(rows: &[Row]) -> Vec<Group<'_>> {
    // The swept rows, and the K = 0 row of each of their series.
    let members = rows.iter().filter(|r| {
        owns(r) || (r.idle_beside == Some(0) && rows.iter().any(|o| owns(o) && same_series(o, r)))
    });
    super::group_by(members, alike)
        .into_iter()
        .map(|mut g| {
            g.rows.sort_by_key(|r| {
                (
                    rows.iter().position(|x| x.label() == r.label()),
                    r.idle_beside,
                )
            });
            g
        })
        .collect()
}

/// A figure with its ratio to K = 0 after it: `12.3 (2.41×)`.
fn with_ratio(value: Option<String>, ratio: Option<f64>, k: usize) -> String {
    match (value, ratio) {
        (Some(v), Some(x)) if k > 0 => format!("{v} ({x:.2}×)"),
        (Some(v), _) => v,
        (None, _) => String::new(),
    }
}

/// What a row that has no figure says, short.
fn why_not(r: &Row) -> String {
    match r.status {
        Status::Ok => String::new(),
        Status::Unreachable if r.note.contains("FD_SETSIZE") => "unreachable: FD_SETSIZE".into(),
        Status::Unreachable if r.note.contains("workers") => "unreachable: pool size".into(),
        Status::Unreachable => "unreachable".into(),
        Status::Failed => "failed".into(),
        Status::Skipped => "skipped".into(),
    }
}

/// The summary table: each model's CPU per request at each K against its own at K = 0.
fn summary(g: &Group) -> Table {
    let counts: Vec<usize> = counts(g).into_iter().filter(|&k| k > 0).collect();
    let headers: Vec<String> = std::iter::once("model".to_string())
        .chain(std::iter::once("CPU µs/req, K = 0".to_string()))
        .chain(counts.iter().map(|k| format!("× at {k} idle")))
        .collect();
    let rows = g
        .models()
        .into_iter()
        .map(|m| {
            let at = |k: usize| {
                g.rows
                    .iter()
                    .find(|r| r.label() == m && r.idle_beside == Some(k))
            };
            let base = at(0).map_or(String::new(), |r| match r.cpu_us_per_request {
                Some(v) if r.status == Status::Ok => format!("{v:.2}"),
                _ => why_not(r),
            });
            let mut cells = vec![m.clone(), base];
            cells.extend(counts.iter().map(|&k| {
                match at(k) {
                    None => String::new(),
                    Some(r) if r.status != Status::Ok => why_not(r),
                    Some(r) => r
                        .vs_no_idle
                        .and_then(|v| v.cpu_us_per_request)
                        .map_or("(no K = 0)".into(), |x| format!("{x:.2}×")),
                }
            }));
            cells
        })
        .collect();
    Table { headers, rows }
}

/// The full table: every figure, each beside its ratio to K = 0.
fn full(g: &Group) -> Table {
    let headers = [
        "model",
        "idle",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU µs/req",
        "usr+sys",
        "PSS",
        "thr/proc",
        "csw/req",
        "errors",
        "note",
    ];
    let body = g
        .rows
        .iter()
        .map(|r| {
            let k = r.idle_beside.unwrap_or(0);
            let ok = r.status == Status::Ok;
            let v = r.vs_no_idle.unwrap_or_default();
            let l = r.latency_us.filter(|_| ok);
            let when = |cell: Option<String>| cell.filter(|_| ok);
            vec![
                r.label(),
                k.to_string(),
                with_ratio(
                    when(r.requests_per_sec.map(table::count)),
                    v.requests_per_sec,
                    k,
                ),
                with_ratio(l.map(|l| table::micros(l.p50)), v.p50, k),
                with_ratio(l.map(|l| table::micros(l.p99)), v.p99, k),
                with_ratio(l.map(|l| table::micros(l.p999)), v.p999, k),
                with_ratio(
                    when(r.cpu_us_per_request.map(|c| format!("{c:.2}"))),
                    v.cpu_us_per_request,
                    k,
                ),
                when(
                    r.cpu_user_us_per_request
                        .zip(r.cpu_sys_us_per_request)
                        .map(|(u, s)| format!("{u:.1}+{s:.1}")),
                )
                .unwrap_or_default(),
                when(r.pss_peak_bytes.map(|b| table::bytes(b as f64))).unwrap_or_default(),
                when(
                    r.peak_tasks
                        .map(|t| format!("{}/{}", t.threads, t.processes)),
                )
                .unwrap_or_default(),
                when(
                    r.context_switches_per_request
                        .map(|s| format!("{:.2}/{:.2}", s.voluntary, s.involuntary)),
                )
                .unwrap_or_default(),
                when(Some(r.errors.total().to_string())).unwrap_or_default(),
                table::note(r),
            ]
        })
        .collect();
    Table::new(&headers, body)
}

/// How far the repeated runs of the group spread, in one sentence.
fn stability(g: &Group) -> String {
    let runs = g.rows.iter().map(|r| r.runs).max().unwrap_or(0);
    let mut widths: Vec<(f64, &Row)> = g
        .rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| {
            let s = r.spread.as_ref()?.get("cpu_us_per_request")?;
            (s.min > 0.0).then_some((s.max / s.min - 1.0, *r))
        })
        .collect();
    if widths.is_empty() {
        return format!(
            "Each figure is from {runs} run{} per point, so no spread was measured: on a shared \
             machine a single run can land a fifth or more off its median, so a ratio within \
             about 0.8–1.2× reads as flat, and poll's and select's several-fold growth is the \
             shape to look at. `--repeat 5` runs the points in interleaved rounds and reports \
             their spread (notes/c10k.md has such a run).",
            if runs == 1 { "" } else { "s" }
        );
    }
    widths.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = widths[widths.len() / 2].0;
    let (widest, at) = widths[widths.len() - 1];
    format!(
        "Stability: each figure is the median of {runs} runs, each on a fresh server. Server CPU \
         per request, highest run over lowest: {:.0}% at the median point, {:.0}% at the widest \
         ({}, {} idle).",
        median * 100.0,
        widest * 100.0,
        at.label(),
        at.idle_beside.unwrap_or(0)
    )
}

const INTRO: &str = "Each point: a fresh server; K connections opened, each after one round \
trip, and left idle; then the busy connections measured as everywhere else. A ratio is the figure \
over the same model's with no idle connection (K = 0): select and poll hand the kernel every \
watched descriptor on every wait, an epoll instance returns only the ready ones, and the \
blocking family holds a thread or a process per idle connection (see thr/proc and PSS).";

/// The tables of the sweep, as (title, text after the table, table, the row of results.json
/// each body row shows — none for a table whose rows summarise several).
pub fn sections(rows: &[Row]) -> Vec<(String, String, Table, Vec<&Row>)> {
    groups(rows)
        .into_iter()
        .flat_map(|g| {
            let title = group_title(&g);
            [
                (
                    format!("Busy beside idle: CPU per request against K = 0 — {title}"),
                    format!("{INTRO}\n\n{}", stability(&g)),
                    summary(&g),
                    Vec::new(),
                ),
                (
                    format!("Busy beside idle — {title}"),
                    String::new(),
                    full(&g),
                    g.rows.clone(),
                ),
            ]
        })
        .collect()
}

/// Draws the sweep's plots into `dir`; returns (file name, alt text) of each.
pub fn plots(dir: &Path, rows: &[Row]) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for g in groups(rows) {
        let busy = g.first().connections;
        let desc = format!("connections held: {busy} busy + K idle (log scale)");
        let x = XAxis {
            desc: &desc,
            log: true,
            format: &|v| table::count(*v),
        };
        let lines = |value: &dyn Fn(&Row) -> Option<f64>| -> Vec<Line> {
            g.models()
                .into_iter()
                .map(|m| Line {
                    points: g
                        .rows
                        .iter()
                        .filter(|r| r.label() == m && r.status == Status::Ok)
                        .filter_map(|r| Some(((busy + r.idle_beside?) as f64, value(r)?)))
                        .collect(),
                    label: m,
                })
                .collect()
        };
        let file = format!("cpu_beside_{}.svg", stem(&g));
        let what = super::carried(&g.first().protocol, g.first().size);
        let title = format!("Server CPU per request, {busy} busy beside K idle ({what})");
        plots::micros_against(
            &dir.join(&file),
            &title,
            &x,
            "server CPU per request, µs (log scale)",
            &lines(&|r| r.cpu_us_per_request),
        )?;
        out.push((file, title));
        let file = format!("p99_beside_{}.svg", stem(&g));
        let title = format!("p99 latency, {busy} busy beside K idle ({what})");
        plots::latency_against(
            &dir.join(&file),
            &title,
            &x,
            &lines(&|r| r.latency_us.map(|l| l.p99)),
        )?;
        out.push((file, title));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report::diff::Spread;
    use crate::harness::report::row::Ratios;

    fn row(model: &str, k: usize, cpu: f64, ratio: Option<f64>) -> Row {
        let mut r = Row::new(model, "echo", Mode::Closed, 10, 64);
        r.idle_beside = Some(k);
        r.runs = 3;
        r.cpu_us_per_request = Some(cpu);
        r.vs_no_idle = ratio.map(|x| Ratios {
            cpu_us_per_request: Some(x),
            ..Ratios::default()
        });
        r.spread = Some(
            [(
                "cpu_us_per_request".to_string(),
                Spread {
                    min: cpu,
                    max: cpu * 1.1,
                },
            )]
            .into(),
        );
        r
    }

    /// The summary has a column per K above 0, the ratio in each cell, and says why a model has
    /// none (FD_SETSIZE); the stability line reports the spread of the repeats.
    #[test]
    fn summary_and_stability() {
        let rows = vec![
            row("poll", 0, 5.0, Some(1.0)),
            row("poll", 1000, 10.0, Some(2.0)),
            row("select", 0, 5.0, Some(1.0)),
            row("select", 5000, 0.0, None).with_status(
                Status::Unreachable,
                "watches only descriptors below 1024 (FD_SETSIZE)",
            ),
            Row::new("poll", "echo", Mode::Closed, 10, 64),
        ];
        let gs = groups(&rows);
        assert_eq!(gs.len(), 1, "the plain row is not part of the sweep");
        let t = summary(&gs[0]);
        assert_eq!(
            t.headers,
            [
                "model",
                "CPU µs/req, K = 0",
                "× at 1000 idle",
                "× at 5000 idle"
            ]
        );
        assert_eq!(t.rows[0], ["poll", "5.00", "2.00×", ""]);
        assert_eq!(t.rows[1], ["select", "5.00", "", "unreachable: FD_SETSIZE"]);
        let text = stability(&gs[0]);
        assert!(
            text.contains("median of 3 runs") && text.contains("10%"),
            "{text}"
        );
        let full = full(&gs[0]);
        assert_eq!(full.rows[1][6], "10.00 (2.00×)");
    }
}
