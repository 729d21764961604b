//! The report of a `compare` run: the tables on the terminal, and a folder holding
//! results.json, results.csv, index.md and SVG plots.
//!
//! - [`row`]: one model at one point, every figure or the reason for none.
//! - [`table`]: the tables, as aligned text and as markdown.
//! - [`files`]: results.json and results.csv.
//! - [`plots`]: the SVG plots.
//! - [`machine`]: the machine the figures were measured on.
//! - [`beside`]: the busy-beside-idle tables and plots.
//! - [`rates`]: the offered-load tables, the knees, the coordinated-omission run, the plot.

pub mod beside;
pub mod files;
pub mod machine;
pub mod plots;
pub mod rates;
pub mod row;
pub mod table;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use machine::Machine;
use plots::{CpuBars, Line, MemoryBar};
use row::{Mode, Row, Status};

/// The settings a run used, as the report records them.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Model names.
    pub models: Vec<String>,
    /// Protocol names.
    pub protocols: Vec<String>,
    /// The connection sweep.
    pub connections: Vec<usize>,
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// The churn sweep.
    pub churn: Vec<usize>,
    /// The idle sweep.
    pub idle: Vec<usize>,
    /// Busy beside idle: the idle connection counts.
    pub idle_beside: Vec<usize>,
    /// Busy beside idle: the busy connection counts.
    pub beside_connections: Vec<usize>,
    /// Pipelining depths of the closed loop.
    pub pipeline: Vec<usize>,
    /// The offered-load sweep's rates (`auto`, or a list), if any.
    pub rates: Option<String>,
    /// The offered-load sweep's connection counts.
    pub rate_connections: Vec<usize>,
    /// The bound on p99 for a knee, µs.
    pub slo_p99_us: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Runs per point.
    pub repeat: usize,
    /// `--workers`, if given.
    pub workers: Option<usize>,
    /// The pool models' workers when `--workers` is not given.
    pub pool_workers: usize,
    /// The accept locks prefork ran with.
    pub accept_locks: Vec<String>,
    /// The preset asked for (`classic`), if any.
    pub preset: Option<String>,
    /// The server's CPU, if pinned.
    pub server_cpu: Option<usize>,
    /// The load generator's CPU, if pinned.
    pub client_cpu: Option<usize>,
}

/// Everything a report is made of.
#[derive(Serialize)]
pub struct Report<'a> {
    /// Where it ran.
    pub machine: &'a Machine,
    /// How it ran.
    pub settings: &'a Settings,
    /// How long the run took, seconds.
    pub wall_s: f64,
    /// The run was interrupted before the end.
    pub interrupted: bool,
    /// The rows.
    #[serde(skip)]
    pub rows: &'a [Row],
}

impl<'a> Report<'a> {
    /// A report of `rows`.
    pub fn new(
        machine: &'a Machine,
        settings: &'a Settings,
        rows: &'a [Row],
        wall: Duration,
        interrupted: bool,
    ) -> Self {
        Report {
            machine,
            settings,
            wall_s: wall.as_secs_f64(),
            interrupted,
            rows,
        }
    }
}

/// One section of the report: rows of one protocol and size under one mode.
struct Section<'a> {
    mode: Mode,
    protocol: &'a str,
    /// Message size (closed, open, churn) or connections held (idle).
    key: usize,
    /// Requests in flight per connection.
    pipeline: usize,
    rows: Vec<&'a Row>,
}

impl Section<'_> {
    fn title(&self) -> String {
        // HTTP rows have size 0: the request is always `GET /`.
        let what = carried(self.protocol, self.key);
        let what = match self.pipeline {
            1 => what,
            d => format!("{what}, {d} pipelined per connection"),
        };
        match self.mode {
            Mode::Closed => format!("Closed loop — {what}"),
            Mode::Open => format!("Open loop — {what}"),
            Mode::Churn => format!("Churn: connect, one request, close — {}", self.protocol),
            Mode::Idle => format!(
                "Idle connections: memory per connection — {}, {} held",
                self.protocol, self.key
            ),
        }
    }

    fn table(&self) -> table::Table {
        match self.mode {
            Mode::Closed | Mode::Open => table::load_table(&self.rows),
            Mode::Churn => table::churn_table(&self.rows),
            Mode::Idle => table::idle_table(&self.rows),
        }
    }

    fn stem(&self) -> String {
        let stem = match self.key {
            0 => self.protocol.to_string(),
            key => format!("{}_{key}", self.protocol),
        };
        match self.pipeline {
            1 => stem,
            d => format!("{stem}_p{d}"),
        }
    }
}

fn sections(rows: &[Row]) -> Vec<Section<'_>> {
    let mut out: Vec<Section> = Vec::new();
    // The experiments' rows have sections of their own (`beside`, `rates`).
    for r in rows.iter().filter(|r| !beside::owns(r) && !rates::owns(r)) {
        let key = if r.mode == Mode::Idle {
            r.connections
        } else if r.mode == Mode::Churn {
            0
        } else {
            r.size
        };
        match out.iter_mut().find(|s| {
            s.mode == r.mode && s.protocol == r.protocol && s.key == key && s.pipeline == r.pipeline
        }) {
            Some(s) => s.rows.push(r),
            None => out.push(Section {
                mode: r.mode,
                protocol: &r.protocol,
                key,
                pipeline: r.pipeline,
                rows: vec![r],
            }),
        }
    }
    // Loaded rows first, then churn, then idle; model order kept within each.
    out.sort_by_key(|s| match s.mode {
        Mode::Closed | Mode::Open => 0,
        Mode::Churn => 1,
        Mode::Idle => 2,
    });
    for s in &mut out {
        s.rows
            .sort_by_key(|r| (rows.iter().position(|x| x.model == r.model), r.connections));
    }
    out
}

/// The classic tables (Stevens, UNP Figure 30.1): one per churn point that has an iterative
/// row to subtract, titled with the point.
fn classic_sections(rows: &[Row]) -> Vec<(String, table::Table)> {
    sections(rows)
        .into_iter()
        .filter(|s| s.mode == Mode::Churn)
        .flat_map(|s| {
            let mut points: Vec<(usize, usize)> = Vec::new();
            for r in &s.rows {
                if r.process_control_us_per_connection.is_some()
                    && !points.contains(&(r.connections, r.size))
                {
                    points.push((r.connections, r.size));
                }
            }
            points.into_iter().map(move |(slots, size)| {
                let rows: Vec<&Row> = s
                    .rows
                    .iter()
                    .copied()
                    .filter(|r| r.connections == slots && r.size == size)
                    .collect();
                let asked = match size {
                    0 => String::new(),
                    n => format!(", {n}-byte messages"),
                };
                let title = format!(
                    "Process-control CPU per connection (UNP Figure 30.1) — {}{asked}, {slots} client slots",
                    s.protocol
                );
                (title, table::classic_table(&rows))
            })
        })
        .collect()
}

/// The tables as aligned text, for the terminal.
pub fn terminal(rows: &[Row]) -> String {
    let mut out = String::new();
    for (title, table) in classic_sections(rows) {
        let _ = writeln!(out, "\n{title}\n{}", table.to_text());
    }
    for s in sections(rows) {
        let _ = writeln!(out, "\n{}\n{}", s.title(), s.table().to_text());
    }
    for (title, text, table) in beside::sections(rows)
        .into_iter()
        .chain(rates::sections(rows))
    {
        let _ = writeln!(out, "\n{title}\n{}", table.to_text());
        if !text.is_empty() {
            let _ = writeln!(out, "{text}");
        }
    }
    out
}

/// Writes the report into `dir` (created if missing); returns the files written.
pub fn write(dir: &Path, report: &Report) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let json = dir.join("results.json");
    files::write_json(&json, report.rows)?;
    written.push(json);
    let csv = dir.join("results.csv");
    files::write_csv(&csv, report.rows)?;
    written.push(csv);
    let run = dir.join("run.json");
    fs::write(
        &run,
        serde_json::to_string_pretty(report).map_err(io::Error::other)? + "\n",
    )?;
    written.push(run);

    let mut md = header(report);
    for (title, table) in classic_sections(report.rows) {
        let _ = writeln!(
            md,
            "## {title}\n\n{CLASSIC_NOTE}\n\n{}",
            table.to_markdown()
        );
    }
    for s in sections(report.rows) {
        let _ = writeln!(md, "## {}\n\n{}", s.title(), s.table().to_markdown());
        for (file, alt) in section_plots(dir, &s)? {
            let _ = writeln!(md, "![{alt}]({file})\n");
            written.push(dir.join(file));
        }
    }
    for (title, text, table) in beside::sections(report.rows) {
        let _ = writeln!(md, "## {title}\n\n{}\n{text}\n", table.to_markdown());
    }
    for (file, alt) in beside::plots(dir, report.rows)? {
        let _ = writeln!(md, "![{alt}]({file})\n");
        written.push(dir.join(file));
    }
    let slo = Duration::from_secs_f64(report.settings.slo_p99_us / 1e6);
    for (title, text, table) in rates::sections(report.rows) {
        let _ = writeln!(md, "## {title}\n\n{}\n{text}\n", table.to_markdown());
    }
    for (file, alt) in rates::plots(dir, report.rows, slo)? {
        let _ = writeln!(md, "![{alt}]({file})\n");
        written.push(dir.join(file));
    }
    md.push_str(FOOTER);
    let index = dir.join("index.md");
    fs::write(&index, md)?;
    written.push(index);
    Ok(written)
}

fn header(report: &Report) -> String {
    let m = report.machine;
    let s = report.settings;
    let mut md = String::from("# server-models: compare\n\n");
    let _ = writeln!(
        md,
        "Measured {} on {} ({} CPUs, {} of memory), {}; load average at the start {}.\n",
        m.date,
        m.cpu_model,
        m.cores,
        table::bytes(m.memory_bytes as f64),
        m.kernel,
        m.load_average
    );
    let pinning = match (s.server_cpu, s.client_cpu) {
        (Some(server), Some(client)) => {
            format!("Each server ran pinned to CPU {server}; the load generator and the harness to CPU {client}.")
        }
        _ => "Nothing was pinned (fewer than two CPUs, or --no-pin): server and client shared the CPUs.".into(),
    };
    let _ = writeln!(
        md,
        "{pinning} Every point ran on a fresh server: {:.2} s of warm-up, then a {:.2} s measured window; \
         figures are the median of {} run{} per point (errors summed). Workers: {}. The whole run took {:.0} s{}.\n",
        s.warmup_s,
        s.duration_s,
        s.repeat,
        if s.repeat == 1 { "" } else { "s" },
        s.workers.map_or(
            format!(
                "{} for the pool models, the others their default (one per CPU they may use)",
                s.pool_workers
            ),
            |w| format!("{w} for every server")
        ),
        report.wall_s,
        if report.interrupted {
            " (interrupted: the tables are partial)"
        } else {
            ""
        }
    );
    if !s.idle_beside.is_empty() {
        let busy: Vec<String> = s.beside_connections.iter().map(|c| c.to_string()).collect();
        let ks: Vec<String> = s.idle_beside.iter().map(|k| k.to_string()).collect();
        let _ = writeln!(
            md,
            "Busy beside idle: {} busy connection{} beside K = {} idle ones.\n",
            busy.join(", "),
            if busy == ["1"] { "" } else { "s" },
            ks.join(", ")
        );
    }
    if let Some(rates) = &s.rates {
        let conns: Vec<String> = s.rate_connections.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            md,
            "Offered load: rates {rates} (requests/s) over {} connections; a knee needs p99 under {} µs.\n",
            conns.join(", "),
            table::micros(s.slo_p99_us)
        );
    }
    md.push_str(
        "What every column means: see the `compare` section of the README. In short — CPU is the \
         server's whole process tree (reaped children included), user+sys apart; PSS counts a page \
         shared by forked processes once (RSS, beside it, once per process); mem/conn is (PSS with N \
         idle connections − PSS with none) / N; thr/proc are peak threads and processes; csw/req are \
         voluntary/involuntary context switches per request; a row marked client-bound measured the \
         load generator more than the server.\n\n",
    );
    md
}

const CLASSIC_NOTE: &str = "Stevens' experiment (UNP ch. 30): each client slot connects, sends one \
request, reads the whole reply and closes (SO_LINGER 0), again and again. CPU µs/conn is the \
server's whole tree over the window divided by the connections served; *process control* is that \
figure less the iterative server's at the same point: what the design spends on forking, waking, \
handing over and creating, beyond the TCP work every design does.";

const FOOTER: &str = "## Files\n\n- `results.json`: one object per row, every figure (null when not measured).\n\
- `results.csv`: the same, one line per row.\n- `run.json`: the machine and the settings.\n";

/// Draws the plots of one section; returns (file name, alt text) of each.
fn section_plots(dir: &Path, s: &Section) -> io::Result<Vec<(String, String)>> {
    let ok: Vec<&Row> = s
        .rows
        .iter()
        .copied()
        .filter(|r| r.status == Status::Ok)
        .collect();
    let models = model_order(&s.rows);
    let mut out = Vec::new();
    match s.mode {
        Mode::Closed | Mode::Open => {
            let lines = |value: &dyn Fn(&Row) -> Option<f64>| -> Vec<Line> {
                models
                    .iter()
                    .map(|m| Line {
                        label: m.clone(),
                        points: ok
                            .iter()
                            .filter(|r| r.label() == *m)
                            .filter_map(|r| Some((r.connections as f64, value(r)?)))
                            .collect(),
                    })
                    .collect()
            };
            let file = format!("throughput_{}.svg", s.stem());
            let title = format!("Throughput — {}", s.title());
            plots::throughput(&dir.join(&file), &title, &lines(&|r| r.requests_per_sec))?;
            out.push((file, title));
            let file = format!("p99_{}.svg", s.stem());
            let title = format!("p99 latency — {}", s.title());
            plots::latency(
                &dir.join(&file),
                &title,
                &lines(&|r| r.latency_us.map(|l| l.p99)),
            )?;
            out.push((file, title));
            let counts: Vec<usize> = ok
                .iter()
                .map(|r| r.connections)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let bars: Vec<CpuBars> = models
                .iter()
                .map(|m| CpuBars {
                    label: m.clone(),
                    bars: ok
                        .iter()
                        .filter(|r| r.label() == *m)
                        .filter_map(|r| {
                            Some((
                                r.connections,
                                r.cpu_user_us_per_request?,
                                r.cpu_sys_us_per_request?,
                            ))
                        })
                        .collect(),
                })
                .collect();
            let file = format!("cpu_{}.svg", s.stem());
            let title = format!("Server CPU per request — {}", s.title());
            plots::cpu(&dir.join(&file), &title, &bars, &counts)?;
            out.push((file, title));
        }
        Mode::Idle => {
            let bars: Vec<MemoryBar> = s
                .rows
                .iter()
                .map(|r| MemoryBar {
                    label: r.label(),
                    value: match (r.status, r.bytes_per_connection) {
                        (Status::Ok, Some(v)) => Ok(v),
                        (Status::Ok, None) => Err("not measured".into()),
                        (_, _) => Err(short_reason(&r.note)),
                    },
                })
                .collect();
            let file = format!("memory_{}.svg", s.stem());
            let title = format!(
                "Memory per idle connection — {}, {} held",
                s.protocol, s.key
            );
            plots::memory(&dir.join(&file), &title, &bars)?;
            out.push((file, title));
        }
        Mode::Churn => {}
    }
    Ok(out)
}

/// What the rows carried: `echo, 64 B messages`, or the protocol alone for HTTP (size 0).
fn carried(protocol: &str, size: usize) -> String {
    match size {
        0 => protocol.to_string(),
        size => format!("{protocol}, {} messages", table::bytes(size as f64)),
    }
}

/// Rows that share one table of an experiment: all alike but the model and the one figure
/// swept (K, the rate).
struct Group<'a> {
    rows: Vec<&'a Row>,
}

impl Group<'_> {
    /// The first row: what the group has in common.
    fn first(&self) -> &Row {
        self.rows[0]
    }

    /// The models (with their accept lock), in first-appearance order.
    fn models(&self) -> Vec<String> {
        model_order(&self.rows)
    }
}

/// `rows` in groups of rows that are `alike`, each group in first-appearance order.
fn group_by<'a>(
    rows: impl Iterator<Item = &'a Row>,
    alike: impl Fn(&Row, &Row) -> bool,
) -> Vec<Group<'a>> {
    let mut out: Vec<Group> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|g| alike(g.first(), r)) {
            Some(g) => g.rows.push(r),
            None => out.push(Group { rows: vec![r] }),
        }
    }
    out
}

/// The models of a section (with their accept lock), in their first-appearance order.
fn model_order(rows: &[&Row]) -> Vec<String> {
    let mut models: Vec<String> = Vec::new();
    for r in rows {
        let label = r.label();
        if !models.contains(&label) {
            models.push(label);
        }
    }
    models
}

/// The first clause of a reason, short enough to sit beside a bar.
fn short_reason(note: &str) -> String {
    note.split([':', ';', '('])
        .next()
        .unwrap_or(note)
        .trim()
        .to_string()
}
