//! Two runs compared: per model and point, each figure's change as a ratio (new / old), with a
//! noise threshold derived from the repeats, so that "did my change make epoll-et cheaper?" has
//! an answer in one command (`server-models diff OLD NEW`, or `compare --baseline OLD`).
//!
//! Rows are matched by their point — the model (with its accept lock), the protocol, the mode,
//! the connections, the size, the rate, the server's CPUs, and the fields other sweeps add
//! ([`IDENTITY`]). A figure is any number of a row's JSON that is not part of its identity or
//! one of [`NOT_FIGURES`], found generically (`latency_us.p99`, `peak_tasks.threads`, ...), so
//! that a figure added to `Row` is compared without a change here.
//!
//! **Noise.** A run with `--repeat N` (N ≥ 2) records each figure's spread over its runs in
//! results.json (`spread`: {figure: {min, max}}). A change counts only when it passes the
//! larger of the two runs' relative spreads ((max − min) / median) and a floor (`--threshold`,
//! default 5%: three runs can agree closely by chance). A change inside the spread is shown as
//! unchanged. Without repeats on either side (idle points are measured once) the floor alone is
//! the threshold, and the table says so. A figure that was 0 has no ratio: it counts as changed
//! only when every repeat of the new run is away from zero.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::doc::{Block, Doc};
use super::row::{Row, Status};
use super::table::Table;

/// The fields that say which point a row is (a field a sweep has not added yet is absent and
/// reads as null on both sides).
pub const IDENTITY: &[&str] = &[
    "model",
    "accept_lock",
    "protocol",
    "mode",
    "connections",
    "size",
    "rate",
    "server_cpus",
    "idle_beside",
    "offered_rate",
    "pipeline",
];

/// Numbers of a row that are not figures of the server: settings, counts that depend on the
/// window's length, the repeats' bookkeeping.
pub const NOT_FIGURES: &[&str] = &[
    "workers",
    "runs",
    "requests",
    "errors",
    "client_bound",
    "spread",
    "served_per_worker",
    "load_cpus",
];

/// The figures whose rise is good news; for every other figure (latency, CPU, memory, context
/// switches, syscalls) less is better.
pub const HIGHER_IS_BETTER: &[&str] = &["requests_per_sec", "events_per_wait"];

/// The smallest relative change counted by default, whatever the spread.
pub const DEFAULT_THRESHOLD: f64 = 0.05;

/// A figure's range over the repeats of a point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The smallest of the runs' values.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// (max − min) / |median|: the spread as a share of the figure.
    fn relative(&self, median: f64) -> f64 {
        if median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / median.abs()
        }
    }
}

/// Every figure of a row, by its dotted path in results.json, in the order they appear.
pub fn figures(row: &Row) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(row) {
        for (k, v) in &map {
            if !IDENTITY.contains(&k.as_str()) && !NOT_FIGURES.contains(&k.as_str()) {
                leaves(k, v, &mut out);
            }
        }
    }
    out
}

fn leaves(path: &str, v: &Value, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((path.to_string(), x));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                leaves(&format!("{path}.{k}"), v, out);
            }
        }
        // Arrays are lists (CPUs, counts per worker), not figures; the rest are words.
        _ => {}
    }
}

/// Each figure's spread over `runs` (one row per run of the same point), or `None` for fewer
/// than two runs.
pub fn spread(runs: &[Row]) -> Option<BTreeMap<String, Spread>> {
    if runs.len() < 2 {
        return None;
    }
    let mut out: BTreeMap<String, Spread> = BTreeMap::new();
    for run in runs {
        for (name, x) in figures(run) {
            out.entry(name)
                .and_modify(|s| {
                    s.min = s.min.min(x);
                    s.max = s.max.max(x);
                })
                .or_insert(Spread { min: x, max: x });
        }
    }
    Some(out)
}

/// A row's point, as [`IDENTITY`] reads it, for matching.
fn identity(row: &Row) -> Vec<Value> {
    let value = serde_json::to_value(row).unwrap_or(Value::Null);
    IDENTITY
        .iter()
        .map(|k| value.get(k).cloned().unwrap_or(Value::Null))
        .collect()
}

/// What became of one figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Within the threshold.
    Unchanged,
    /// Past it, for the better.
    Better,
    /// Past it, for the worse.
    Worse,
}

/// One figure of one matched row, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The row's model label and point, as the tables name it.
    pub point: String,
    /// The figure's path in results.json.
    pub figure: String,
    /// Its value in the old run.
    pub old: f64,
    /// Its value in the new run.
    pub new: f64,
    /// new / old (`None` when old is 0).
    pub ratio: Option<f64>,
    /// The relative change it had to pass.
    pub threshold: f64,
    /// Whether the threshold came from the repeats' spread (`false`: the floor alone).
    pub from_repeats: bool,
    /// What the change amounts to.
    pub verdict: Verdict,
}

/// Two runs compared.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// Rows found in both runs.
    pub matched: usize,
    /// Every figure of every matched row, unchanged ones included.
    pub changes: Vec<Change>,
    /// Points whose status changed (`ok` → `failed`, ...), with both notes.
    pub status: Vec<String>,
    /// Points only the old run has.
    pub only_old: Vec<String>,
    /// Points only the new run has.
    pub only_new: Vec<String>,
    /// What the two runs' run.json say of their conditions (the load average at the start),
    /// when they say it: a change may be the machine's, not the code's.
    pub conditions: Vec<String>,
}

impl Diff {
    /// The changes past their threshold.
    pub fn changed(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.verdict != Verdict::Unchanged)
    }

    /// Whether nothing changed: no figure past its threshold, no status, no point missing.
    pub fn is_empty(&self) -> bool {
        self.changed().next().is_none()
            && self.status.is_empty()
            && self.only_old.is_empty()
            && self.only_new.is_empty()
    }
}

/// A row's point in words: `epoll-lt echo closed ×100 64 B`, and its CPUs when it has them.
pub fn point_name(row: &Row) -> String {
    let mut s = format!(
        "{} {} {} ×{}",
        row.label(),
        row.protocol,
        row.mode.name(),
        row.connections
    );
    if row.size > 0 {
        s.push_str(&format!(" {} B", row.size));
    }
    if let Some(rate) = row.rate {
        s.push_str(&format!(" at {rate}/s"));
    }
    if let Some(cpus) = &row.server_cpus {
        s.push_str(&format!(
            " on {} CPU{}",
            cpus.len(),
            if cpus.len() == 1 { "" } else { "s" }
        ));
    }
    s
}

/// Compares every row of `new` with the row of `old` at the same point; `floor` is the
/// smallest relative change counted.
pub fn diff(old: &[Row], new: &[Row], floor: f64) -> Diff {
    let mut out = Diff::default();
    let old_ids: Vec<Vec<Value>> = old.iter().map(identity).collect();
    let mut used = vec![false; old.len()];
    for n in new {
        let id = identity(n);
        let Some(i) = (0..old.len()).find(|&i| !used[i] && old_ids[i] == id) else {
            out.only_new.push(point_name(n));
            continue;
        };
        used[i] = true;
        let o = &old[i];
        out.matched += 1;
        if o.status != n.status {
            out.status.push(format!(
                "{}: {} → {} ({})",
                point_name(n),
                status_name(o.status),
                status_name(n.status),
                if n.note.is_empty() { &o.note } else { &n.note }
            ));
            continue;
        }
        if n.status != Status::Ok {
            continue;
        }
        let before: BTreeMap<String, f64> = figures(o).into_iter().collect();
        for (figure, new_value) in figures(n) {
            let Some(&old_value) = before.get(&figure) else {
                continue;
            };
            out.changes
                .push(judge(n, o, &figure, old_value, new_value, floor));
        }
    }
    for (i, o) in old.iter().enumerate() {
        if !used[i] {
            out.only_old.push(point_name(o));
        }
    }
    out
}

fn judge(n: &Row, o: &Row, figure: &str, old: f64, new: f64, floor: f64) -> Change {
    let spread_of = |r: &Row, median: f64| {
        r.spread
            .as_ref()
            .and_then(|s| s.get(figure))
            .map(|s| s.relative(median))
    };
    let (so, sn) = (spread_of(o, old), spread_of(n, new));
    let from_repeats = so.is_some() || sn.is_some();
    let threshold = floor.max(so.unwrap_or(0.0)).max(sn.unwrap_or(0.0));
    let ratio = (old != 0.0).then(|| new / old);
    // From zero there is no ratio and no relative noise: the change counts only when every
    // repeat of the new run is away from zero (a figure at the edge of what can be measured,
    // 0 B or 40 B per idle connection, is not a change).
    let away_from_zero = || {
        n.spread
            .as_ref()
            .and_then(|s| s.get(figure))
            .is_some_and(|s| s.min > 0.0 || s.max < 0.0)
    };
    let moved = match ratio {
        Some(r) => (r - 1.0).abs() > threshold,
        None => new != 0.0 && away_from_zero(),
    };
    let up = new > old;
    let higher_is_better = HIGHER_IS_BETTER.contains(&figure);
    let verdict = match (moved, up == higher_is_better) {
        (false, _) => Verdict::Unchanged,
        (true, true) => Verdict::Better,
        (true, false) => Verdict::Worse,
    };
    Change {
        point: point_name(n),
        figure: figure.to_string(),
        old,
        new,
        ratio,
        threshold,
        from_repeats,
        verdict,
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Unreachable => "unreachable",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

/// A ratio as the tables write it: `×1.25`; `new` when the old value was 0.
pub fn ratio_text(c: &Change) -> String {
    match c.ratio {
        Some(r) => format!("×{r:.3}"),
        None => "new".to_string(),
    }
}

/// The changes past their threshold, one line each: point, figure, old, new, ratio, threshold.
pub fn changes_table(d: &Diff) -> Table {
    let rows = d
        .changed()
        .map(|c| {
            vec![
                c.point.clone(),
                c.figure.clone(),
                number(c.old),
                number(c.new),
                ratio_text(c),
                format!(
                    "±{:.1}%{}",
                    c.threshold * 100.0,
                    if c.from_repeats { "" } else { " (no repeats)" }
                ),
                match c.verdict {
                    Verdict::Better => "better",
                    Verdict::Worse => "worse",
                    Verdict::Unchanged => "unchanged",
                }
                .to_string(),
            ]
        })
        .collect();
    Table::new(
        &["point", "figure", "old", "new", "ratio", "noise", "verdict"],
        rows,
    )
}

/// Every matched point against the figures that changed anywhere: the ratio in each cell, and
/// for each cell whether it moved for the better (`up`), the worse (`down`), or not at all.
pub fn matrix(d: &Diff) -> (Table, Vec<Vec<&'static str>>) {
    let mut figures: Vec<&str> = Vec::new();
    for c in d.changed() {
        if !figures.contains(&c.figure.as_str()) {
            figures.push(&c.figure);
        }
    }
    let mut points: Vec<&str> = Vec::new();
    for c in &d.changes {
        if !points.contains(&c.point.as_str()) {
            points.push(&c.point);
        }
    }
    let mut headers = vec!["point"];
    headers.extend(figures.iter().copied());
    let mut rows = Vec::new();
    let mut classes = Vec::new();
    for p in &points {
        let mut cells = vec![p.to_string()];
        let mut marks = vec![""];
        for f in &figures {
            match d.changes.iter().find(|c| c.point == *p && c.figure == *f) {
                Some(c) => {
                    cells.push(ratio_text(c));
                    marks.push(match c.verdict {
                        Verdict::Better => "up",
                        Verdict::Worse => "down",
                        Verdict::Unchanged => "",
                    });
                }
                None => {
                    cells.push(String::new());
                    marks.push("");
                }
            }
        }
        rows.push(cells);
        classes.push(marks);
    }
    (Table::new(&headers, rows), classes)
}

fn number(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

/// The comparison as blocks, for diff.md and diff.html.
pub fn document(d: &Diff, old: &str, new: &str, floor: f64) -> Doc {
    let mut doc = Doc::default();
    doc.heading(1, "server-models: diff");
    doc.text(summary(d, old, new, floor));
    if !d.conditions.is_empty() {
        doc.push(Block::List(d.conditions.clone()));
    }
    if !d.status.is_empty() {
        doc.heading(2, "Points whose status changed");
        doc.push(Block::List(d.status.clone()));
    }
    if !d.only_old.is_empty() || !d.only_new.is_empty() {
        doc.heading(2, "Points in one run only");
        let mut items: Vec<String> = d
            .only_old
            .iter()
            .map(|p| format!("old only: {p}"))
            .collect();
        items.extend(d.only_new.iter().map(|p| format!("new only: {p}")));
        doc.push(Block::List(items));
    }
    if d.changed().next().is_some() {
        doc.heading(2, "Changes past the noise");
        doc.push(Block::Table {
            table: changes_table(d),
            rows: Vec::new(),
        });
        doc.heading(2, "Ratios, new / old, of the figures that changed anywhere");
        doc.text("Green: better, red: worse, uncoloured: within the noise.");
        let (table, classes) = matrix(d);
        doc.push(Block::Marked { table, classes });
    }
    doc
}

/// Reads two report folders' results.json and compares them.
pub fn compare_dirs(old: &Path, new: &Path, floor: f64) -> io::Result<Diff> {
    let (old_rows, old_run) = super::read(old)?;
    let (new_rows, new_run) = super::read(new)?;
    let mut d = diff(&old_rows, &new_rows, floor);
    d.conditions = conditions(old_run.as_ref(), new_run.as_ref());
    Ok(d)
}

/// The load average each run started at, as its run.json has it.
pub fn conditions(old: Option<&super::RunRecord>, new: Option<&super::RunRecord>) -> Vec<String> {
    let said = |r: Option<&super::RunRecord>| {
        r.map(|r| r.machine.load_average.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    vec![format!(
        "load average at the start: old {}, new {}",
        said(old),
        said(new)
    )]
}

/// Writes diff.md, diff.html and diff.json (every figure compared, with its verdict) into
/// `dir`; returns the files written.
pub fn write(dir: &Path, d: &Diff, old: &str, new: &str, floor: f64) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let doc = document(d, old, new, floor);
    let md = dir.join("diff.md");
    fs::write(&md, doc.to_markdown())?;
    let html = dir.join("diff.html");
    let title = format!("server-models: diff — {old} → {new}");
    fs::write(&html, super::html::page(dir, &title, &[], &doc)?)?;
    let json = dir.join("diff.json");
    fs::write(
        &json,
        serde_json::to_string_pretty(d).map_err(io::Error::other)? + "\n",
    )?;
    Ok(vec![md, html, json])
}

/// The comparison as text for the terminal: the summary, then what changed.
pub fn terminal(d: &Diff, old: &str, new: &str, floor: f64) -> String {
    let mut out = format!("{}\n", summary(d, old, new, floor).replace('`', ""));
    for line in &d.conditions {
        out.push_str(&format!("{line}\n"));
    }
    for line in d.status.iter() {
        out.push_str(&format!("status: {line}\n"));
    }
    for p in &d.only_old {
        out.push_str(&format!("old only: {p}\n"));
    }
    for p in &d.only_new {
        out.push_str(&format!("new only: {p}\n"));
    }
    if d.changed().next().is_some() {
        out.push('\n');
        out.push_str(&changes_table(d).to_text());
    }
    out
}

/// One paragraph: what was compared and what changed.
pub fn summary(d: &Diff, old: &str, new: &str, floor: f64) -> String {
    let changed = d.changed().count();
    let better = d.changed().filter(|c| c.verdict == Verdict::Better).count();
    format!(
        "`{old}` → `{new}`: {} points matched, {} figures compared; {changed} changed past the noise \
         ({better} better, {} worse), {} points changed status, {} only in the old run, {} only in the \
         new. Noise: a change counts when it passes the larger of the two runs' spreads over their \
         repeats ((max − min) / median) and {:.0}%.",
        d.matched,
        d.changes.len(),
        changed - better,
        d.status.len(),
        d.only_old.len(),
        d.only_new.len(),
        floor * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report::row::{Latency, Mode};

    fn row(model: &str, rps: f64, cpu: f64) -> Row {
        let mut r = Row::new(model, "echo", Mode::Closed, 100, 64);
        r.runs = 1;
        r.requests = Some(1000);
        r.requests_per_sec = Some(rps);
        r.cpu_us_per_request = Some(cpu);
        r.latency_us = Some(Latency {
            p50: 100.0,
            p99: 300.0,
            ..Latency::default()
        });
        r
    }

    /// Figures are found generically, by path, without the identity or the bookkeeping.
    #[test]
    fn figures_by_path() {
        let names: Vec<String> = figures(&row("poll", 1e4, 5.0))
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert!(names.contains(&"requests_per_sec".to_string()));
        assert!(names.contains(&"latency_us.p99".to_string()));
        for not in ["connections", "size", "requests", "runs", "errors.refused"] {
            assert!(!names.contains(&not.to_string()), "{not} is not a figure");
        }
    }

    /// A run against itself changes nothing; a figure moved past the floor is a change with
    /// its direction; a move inside the repeats' spread is not.
    #[test]
    fn changes_past_the_noise_only() {
        let old = vec![row("poll", 10_000.0, 5.0), row("epoll-et", 12_000.0, 4.0)];
        assert!(diff(&old, &old, DEFAULT_THRESHOLD).is_empty());

        let mut new = old.clone();
        new[1].cpu_us_per_request = Some(2.0);
        new[0].requests_per_sec = Some(10_300.0); // 3%: under the floor
        let d = diff(&old, &new, DEFAULT_THRESHOLD);
        let changed: Vec<&Change> = d.changed().collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].figure, "cpu_us_per_request");
        assert_eq!(changed[0].verdict, Verdict::Better);
        assert_eq!(changed[0].ratio, Some(0.5));

        // The same halving, inside a spread of repeats that wide, is noise.
        let mut noisy = new.clone();
        let mut s = BTreeMap::new();
        s.insert(
            "cpu_us_per_request".to_string(),
            Spread { min: 1.0, max: 4.0 },
        );
        noisy[1].spread = Some(s);
        assert!(
            diff(&old, &noisy, DEFAULT_THRESHOLD)
                .changed()
                .next()
                .is_none()
        );

        // From zero, only a change every repeat agrees on counts.
        let mut zero = old.clone();
        zero[0].bytes_per_connection = Some(0.0);
        let mut some = zero.clone();
        some[0].bytes_per_connection = Some(40.0);
        assert!(
            diff(&zero, &some, DEFAULT_THRESHOLD)
                .changed()
                .next()
                .is_none()
        );
        let mut s = BTreeMap::new();
        s.insert(
            "bytes_per_connection".to_string(),
            Spread {
                min: 30.0,
                max: 50.0,
            },
        );
        some[0].spread = Some(s);
        assert_eq!(diff(&zero, &some, DEFAULT_THRESHOLD).changed().count(), 1);

        // Fewer requests per second is worse.
        new[0].requests_per_sec = Some(5_000.0);
        let d = diff(&old, &new, DEFAULT_THRESHOLD);
        assert!(
            d.changed()
                .any(|c| c.figure == "requests_per_sec" && c.verdict == Verdict::Worse)
        );
    }

    /// Points are matched by identity, not by position; the unmatched and the failed are named.
    #[test]
    fn points_matched_by_identity() {
        let old = vec![row("poll", 1.0, 1.0), row("select", 1.0, 1.0)];
        let mut failed = row("poll", 1.0, 1.0).with_status(Status::Failed, "the server exited");
        failed.requests_per_sec = None;
        let new = vec![row("epoll-lt", 1.0, 1.0), failed];
        let d = diff(&old, &new, DEFAULT_THRESHOLD);
        assert_eq!(d.matched, 1);
        assert_eq!(d.only_new.len(), 1);
        assert!(d.only_new[0].starts_with("epoll-lt"));
        assert_eq!(d.only_old.len(), 1);
        assert!(d.only_old[0].starts_with("select"));
        assert_eq!(d.status.len(), 1);
        assert!(d.status[0].contains("ok → failed"), "{:?}", d.status);
    }

    /// The spread over runs is each figure's min and max; one run has none.
    #[test]
    fn spread_over_runs() {
        let runs = [
            row("poll", 10.0, 5.0),
            row("poll", 14.0, 4.0),
            row("poll", 12.0, 6.0),
        ];
        let s = spread(&runs).expect("three runs");
        assert_eq!(
            s["requests_per_sec"],
            Spread {
                min: 10.0,
                max: 14.0
            }
        );
        assert_eq!(s["cpu_us_per_request"], Spread { min: 4.0, max: 6.0 });
        assert!(spread(&runs[..1]).is_none());
    }
}
