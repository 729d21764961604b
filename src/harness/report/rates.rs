//! The offered-load part of the report: each model's knee, the table of every rate offered,
//! the coordinated-omission run (p99 from the schedule beside p99 from the send), and the plot
//! of p99 against offered load, one line per model — the hockey stick.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::Group;
use super::plots::{self, Line, XAxis};
use super::row::{Row, Status};
use super::table::{self, Table};
use crate::harness::compare::rates::KEEP_UP;

/// Whether a row belongs to the offered-load sweep or is the coordinated-omission run.
pub fn owns(r: &Row) -> bool {
    r.offered_rate.is_some() || r.server_stopped_ms.is_some()
}

fn group_title(g: &Group) -> String {
    let r = g.first();
    let what = super::carried(&r.protocol, r.size);
    let beside = match r.idle_beside {
        Some(k) if k > 0 => format!(", beside {k} idle"),
        _ => String::new(),
    };
    format!(
        "{what}, open loop over {} connections{beside}",
        r.connections
    )
}

fn stem(g: &Group) -> String {
    let r = g.first();
    let stem = match r.size {
        0 => format!("{}_c{}", r.protocol, r.connections),
        size => format!("{}_{size}_c{}", r.protocol, r.connections),
    };
    match r.idle_beside {
        Some(k) if k > 0 => format!("{stem}_k{k}"),
        _ => stem,
    }
}

fn groups(rows: &[Row]) -> Vec<Group<'_>> {
    let alike = |a: &Row, b: &Row| {
        a.protocol == b.protocol
            && a.size == b.size
            && a.connections == b.connections
            && a.idle_beside == b.idle_beside
    };
    super::group_by(rows.iter().filter(|r| r.offered_rate.is_some()), alike)
        .into_iter()
        .map(|mut g| {
            g.rows.sort_by(|a, b| {
                let at = |r: &Row| rows.iter().position(|x| x.label() == r.label());
                let rate = |r: &Row| r.offered_rate.unwrap_or(0.0);
                at(a).cmp(&at(b)).then(rate(a).total_cmp(&rate(b)))
            });
            g
        })
        .collect()
}

/// Achieved over offered, as a percentage.
fn kept(r: &Row) -> Option<f64> {
    Some(r.requests_per_sec? / r.offered_rate? * 100.0)
}

/// The knees: per model, the highest rate kept, and what happened at the next rate tried.
fn knees(g: &Group) -> Table {
    let headers = [
        "model",
        "knee req/s",
        "p99 µs at knee",
        "CPU µs/req at knee",
        "next rate tried",
        "achieved there",
        "p99 µs there",
        "note",
    ];
    let body = g
        .models()
        .into_iter()
        .map(|m| {
            let series: Vec<&Row> = g.rows.iter().copied().filter(|r| r.label() == m).collect();
            let knee = series.iter().find(|r| r.knee);
            let above = |rate: f64| {
                series
                    .iter()
                    .find(|r| r.offered_rate.is_some_and(|o| o > rate))
            };
            let next: Option<&Row> = match knee {
                Some(k) => above(k.offered_rate.unwrap_or(0.0)),
                None => series.first(),
            }
            .copied();
            let mut note = Vec::new();
            if knee.is_none() {
                note.push("kept up at no rate tried".to_string());
            }
            if let Some(n) = next {
                if n.client_bound {
                    note.push(format!(
                        "the load generator was the limit there ({:.0}% CPU)",
                        n.client_cpu_percent.unwrap_or(0.0)
                    ));
                }
                if n.status != Status::Ok {
                    note.push(table::note(n));
                }
            } else if knee.is_some() {
                note.push("kept up at every rate tried".into());
            }
            let ok = |r: &&Row| r.status == Status::Ok;
            let knee: Option<&Row> = knee.copied();
            vec![
                m,
                knee.and_then(|k| k.offered_rate)
                    .map(table::count)
                    .unwrap_or_default(),
                knee.and_then(|k| k.latency_us)
                    .map(|l| table::micros(l.p99))
                    .unwrap_or_default(),
                knee.and_then(|k| k.cpu_us_per_request)
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_default(),
                next.and_then(|n| n.offered_rate)
                    .map(table::count)
                    .unwrap_or_default(),
                next.filter(ok)
                    .and_then(kept)
                    .map(|p| format!("{p:.1}%"))
                    .unwrap_or_default(),
                next.filter(ok)
                    .and_then(|n| n.latency_us)
                    .map(|l| table::micros(l.p99))
                    .unwrap_or_default(),
                note.join("; "),
            ]
        })
        .collect();
    Table::new(&headers, body)
}

/// Every rate offered.
fn offered(g: &Group) -> Table {
    let headers = [
        "model",
        "offered",
        "achieved",
        "kept",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "p99 from send",
        "CPU µs/req",
        "client CPU",
        "errors",
        "note",
    ];
    let body = g
        .rows
        .iter()
        .map(|r| {
            let ok = r.status == Status::Ok;
            let l = r.latency_us.filter(|_| ok);
            let mut note = table::note(r);
            if r.knee {
                note = if note.is_empty() {
                    "← knee".into()
                } else {
                    format!("← knee; {note}")
                };
            }
            vec![
                r.label(),
                r.offered_rate.map(table::count).unwrap_or_default(),
                r.requests_per_sec
                    .filter(|_| ok)
                    .map(table::count)
                    .unwrap_or_default(),
                kept(r)
                    .filter(|_| ok)
                    .map(|p| format!("{p:.1}%"))
                    .unwrap_or_default(),
                l.map(|l| table::micros(l.p50)).unwrap_or_default(),
                l.map(|l| table::micros(l.p99)).unwrap_or_default(),
                l.map(|l| table::micros(l.p999)).unwrap_or_default(),
                r.latency_from_send_us
                    .filter(|_| ok)
                    .map(|l| table::micros(l.p99))
                    .unwrap_or_default(),
                r.cpu_us_per_request
                    .filter(|_| ok)
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_default(),
                r.client_cpu_percent
                    .filter(|_| ok)
                    .map(|c| format!("{c:.0}%"))
                    .unwrap_or_default(),
                if ok {
                    r.errors.total().to_string()
                } else {
                    String::new()
                },
                note,
            ]
        })
        .collect();
    Table::new(&headers, body)
}

/// The coordinated-omission run: its latency from the schedule and from the send, one line
/// each.
fn stalled(r: &Row) -> Table {
    let headers = [
        "model",
        "rate",
        "server stopped",
        "latency measured from",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "note",
    ];
    let line = |from: &str, l: Option<crate::harness::load::Latency>| {
        let cell = |f: fn(&crate::harness::load::Latency) -> f64| {
            l.map(|l| table::micros(f(&l))).unwrap_or_default()
        };
        vec![
            r.label(),
            r.rate.map(table::count).unwrap_or_default(),
            r.server_stopped_ms
                .map(|ms| format!("{ms:.0} ms"))
                .unwrap_or_default(),
            from.to_string(),
            cell(|l| l.p50),
            cell(|l| l.p90),
            cell(|l| l.p99),
            cell(|l| l.p999),
            cell(|l| l.max),
            table::note(r),
        ]
    };
    let ok = r.status == Status::Ok;
    Table::new(
        &headers,
        vec![
            line("the schedule (corrected)", r.latency_us.filter(|_| ok)),
            line(
                "the actual send (coordinated omission)",
                r.latency_from_send_us.filter(|_| ok),
            ),
        ],
    )
}

const INTRO: &str = "Open loop: each connection's requests fall due at fixed intervals whatever \
the server does, and each request's latency runs from when it was due, so a server that falls \
behind shows it. Past its capacity the achieved rate stops following the offered one and the \
latency climbs: the knee is the highest offered rate at which the model kept up";

const STALL_TEXT: &str = "The same open loop, the server's whole process group stopped with \
SIGSTOP for the time shown in the middle of the window and then let go with SIGCONT. Measured \
from each request's scheduled time, every request that fell due during the stop carries the wait; \
measured from when the client actually sent it — what a client that waits for a reply before \
sending the next request reports, wrk's way — only the few requests in flight at the stop do, \
and the percentiles hide the stall: coordinated omission (Gil Tene; wrk2's demonstration).";

/// The tables, as (title, text after the table, table, the row of results.json each body row
/// shows — none for a table whose rows summarise several).
pub fn sections(rows: &[Row]) -> Vec<(String, String, Table, Vec<&Row>)> {
    let mut out = Vec::new();
    for g in groups(rows) {
        let title = group_title(&g);
        out.push((
            format!("Knees — {title}"),
            format!(
                "{INTRO} (achieved ≥ {:.0}% of offered) with p99 under the run's bound.",
                KEEP_UP * 100.0
            ),
            knees(&g),
            Vec::new(),
        ));
        out.push((
            format!("Latency against offered load — {title}"),
            "`p99 from send` is the same requests timed from their actual send: the difference \
             is time a request waited, due, behind the one before it on its connection."
                .to_string(),
            offered(&g),
            g.rows.clone(),
        ));
    }
    for r in rows.iter().filter(|r| r.server_stopped_ms.is_some()) {
        out.push((
            "Coordinated omission: the server stopped for a moment".to_string(),
            STALL_TEXT.to_string(),
            stalled(r),
            Vec::new(),
        ));
    }
    out
}

/// Draws p99 against offered load for each group, with the bound drawn across; returns (file
/// name, alt text) of each.
pub fn plots(dir: &Path, rows: &[Row], slo: Duration) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let x = XAxis {
        desc: "offered load, requests/s (log scale)",
        log: true,
        format: &|v| table::count(*v),
    };
    for g in groups(rows) {
        let mut lines: Vec<Line> = g
            .models()
            .into_iter()
            .map(|m| Line {
                points: g
                    .rows
                    .iter()
                    .filter(|r| r.label() == m && r.status == Status::Ok)
                    .filter_map(|r| Some((r.offered_rate?, r.latency_us?.p99)))
                    .collect(),
                label: m,
            })
            .collect();
        let (lo, hi) = g
            .rows
            .iter()
            .filter_map(|r| r.offered_rate)
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi > 0.0 {
            let bound = slo.as_secs_f64() * 1e6;
            lines.push(Line {
                label: format!("p99 bound ({})", super::plots::si_micros(bound)),
                points: vec![(lo, bound), (hi, bound)],
            });
        }
        let file = format!("p99_offered_{}.svg", stem(&g));
        let r = g.first();
        let beside = match r.idle_beside {
            Some(k) if k > 0 => format!(" beside {k} idle"),
            _ => String::new(),
        };
        let title = format!(
            "p99 against offered load, {} conns{beside} ({})",
            r.connections,
            super::carried(&r.protocol, r.size)
        );
        plots::latency_against(&dir.join(&file), &title, &x, &lines)?;
        out.push((file, title));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::load::Latency;
    use crate::harness::report::row::Mode;

    fn at(model: &str, rate: f64, achieved: f64, p99: f64, knee: bool) -> Row {
        let mut r = Row::new(model, "echo", Mode::Open, 100, 64);
        r.rate = Some(rate);
        r.offered_rate = Some(rate);
        r.requests_per_sec = Some(achieved);
        r.latency_us = Some(Latency {
            p99,
            ..Latency::default()
        });
        r.knee = knee;
        r
    }

    /// The knee table names the knee and the next rate tried with what went wrong there; a
    /// model that kept up nowhere says so.
    #[test]
    fn knee_table() {
        let rows = vec![
            at("poll", 1000.0, 1000.0, 50.0, false),
            at("poll", 2000.0, 2000.0, 80.0, true),
            at("poll", 4000.0, 3000.0, 9000.0, false),
            at("select", 1000.0, 500.0, 9000.0, false),
        ];
        let gs = groups(&rows);
        let t = knees(&gs[0]);
        assert_eq!(
            t.rows[0][..7],
            ["poll", "2000", "80.0", "", "4000", "75.0%", "9000"]
        );
        assert_eq!(t.rows[1][1], "");
        assert!(t.rows[1][7].contains("no rate"), "{:?}", t.rows[1]);
        let o = offered(&gs[0]);
        assert!(o.rows[1].last().is_some_and(|n| n.starts_with("← knee")));
    }
}
