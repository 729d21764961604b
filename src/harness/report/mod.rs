//! The report of a `compare` run: the tables on the terminal, and a folder holding
//! results.json, results.csv, index.md and SVG plots.
//!
//! - [`row`]: one model at one point, every figure or the reason for none.
//! - [`table`]: the tables, as aligned text and as markdown.
//! - [`files`]: results.json and results.csv.
//! - [`diff`]: two runs compared, figure by figure, against the noise of their repeats.
//! - [`doc`]: the report as blocks, rendered to index.md and, by [`html`], to index.html.
//! - [`plots`]: the SVG plots.
//! - [`scaling`]: a sweep of the server's CPUs: figures against the CPU count, workers' shares.
//! - [`machine`]: the machine the figures were measured on.
//! - [`beside`]: the busy-beside-idle tables and plots.
//! - [`rates`]: the offered-load tables, the knees, the coordinated-omission run, the plot.

pub mod beside;
pub mod diff;
pub mod doc;
pub mod files;
pub mod html;
pub mod machine;
pub mod plots;
pub mod rates;
pub mod row;
pub mod scaling;
pub mod table;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use doc::{Block, Doc};
use machine::Machine;
use plots::{CpuBars, Line, MemoryBar, Panel, SyscallBars, YScale};

use crate::harness::family::{self, Family};
use crate::harness::measure::placement::Cpus;
use crate::harness::measure::syscalls;
use row::{Mode, Row, Status};

/// The settings a run used, as the report records them (run.json). A setting an older
/// run.json lacks reads as its default.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
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
    /// The server's first CPU, if pinned (`server_cpus` holds them all).
    pub server_cpu: Option<usize>,
    /// The load generator's first CPU, if pinned (`load_cpus` holds them all).
    pub client_cpu: Option<usize>,
    /// How syscalls were counted, or why they were not.
    pub syscalls: String,
    /// The server's CPUs, if pinned.
    pub server_cpus: Option<Vec<usize>>,
    /// The load generator's CPUs, if pinned: one load thread each.
    pub load_cpus: Option<Vec<usize>>,
    /// The server CPU counts swept (`--server-cores`) for the models that use more than one.
    pub server_cores: Vec<usize>,
    /// Where each server listened (its port its own).
    pub listen: String,
    /// The prefixes each load process ran through (`--load-via`), one process each; empty:
    /// one load process on this host.
    pub load_via: Vec<String>,
    /// With `--load-via`: the server's address as the load hosts saw it.
    pub addr: Option<String>,
    /// The report folder this run was compared with (`--baseline`), if any.
    pub baseline: Option<String>,
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
    /// Rendered again without a run.json: the machine and settings are not known.
    #[serde(skip)]
    pub unknown_run: bool,
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
            unknown_run: false,
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
        let mut table = match self.mode {
            Mode::Closed | Mode::Open => table::load_table(&self.rows),
            Mode::Churn => table::churn_table(&self.rows),
            Mode::Idle => table::idle_table(&self.rows),
        };
        // A sweep of the server's CPUs: the count beside the connections, where it varies.
        if scaling::swept(&self.rows) {
            let cells = self.rows.iter().map(|r| scaling::cpu_count(r)).collect();
            table.insert_column(3, "CPUs", cells);
        }
        table
    }

    /// The syscall breakdown of a loaded or churn section, when anything was counted.
    fn syscall_table(&self) -> Option<table::Table> {
        let counted = self.rows.iter().any(|r| r.syscalls.is_some());
        (self.mode != Mode::Idle && counted).then(|| table::syscall_table(&self.rows))
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
        s.rows.sort_by_key(|r| {
            let cpus = r.server_cpus.as_ref().map_or(0, Vec::len);
            (
                rows.iter().position(|x| x.model == r.model),
                cpus,
                r.connections,
            )
        });
    }
    out
}

/// The classic tables (Stevens, UNP Figure 30.1): one per churn point that has an iterative
/// row to subtract, titled with the point, with the rows each shows.
fn classic_sections(rows: &[Row]) -> Vec<(String, table::Table, Vec<&Row>)> {
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
                (title, table::classic_table(&rows), rows)
            })
        })
        .collect()
}

/// The tables as aligned text, for the terminal.
pub fn terminal(rows: &[Row]) -> String {
    let mut out = String::new();
    for (title, table, _) in classic_sections(rows) {
        let _ = writeln!(out, "\n{title}\n{}", table.to_text());
    }
    for s in sections(rows) {
        let _ = writeln!(out, "\n{}\n{}", s.title(), s.table().to_text());
        if let Some(t) = s.syscall_table() {
            let _ = writeln!(
                out,
                "\nSyscalls per request — {}\n{}",
                s.title(),
                t.to_text()
            );
        }
    }
    for (title, text, table, _) in beside::sections(rows)
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

/// Writes the report into `dir` (created if missing): the data (results.json, results.csv,
/// run.json), then what [`render`] makes of it. Returns the files written.
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
    written.extend(render(dir, report)?);
    Ok(written)
}

/// Renders the report's pages into `dir` from its rows alone: the plots, index.md and
/// index.html, the two pages from the same blocks. Returns the files written.
pub fn render(dir: &Path, report: &Report) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut doc = Doc::default();
    header(&mut doc, report);
    let index_of = |r: &Row| {
        report
            .rows
            .iter()
            .position(|x| std::ptr::eq(x, r))
            .unwrap_or(usize::MAX)
    };
    for (title, table, rows) in classic_sections(report.rows) {
        doc.heading(2, title);
        doc.text(CLASSIC_NOTE);
        let rows = rows.into_iter().map(index_of).collect();
        doc.push(Block::Table { table, rows });
    }
    for s in sections(report.rows) {
        doc.heading(2, s.title());
        let rows = s.rows.iter().map(|r| index_of(r)).collect();
        doc.push(Block::Table {
            table: s.table(),
            rows,
        });
        if let Some(t) = s.syscall_table() {
            doc.heading(3, format!("Syscalls per request — {}", s.title()));
            doc.text(SYSCALL_NOTE);
            // The syscall table shows the measured rows only.
            let rows = s
                .rows
                .iter()
                .filter(|r| r.status == Status::Ok)
                .map(|r| index_of(r))
                .collect();
            doc.push(Block::Table { table: t, rows });
        }
        for (file, alt) in section_plots(dir, &s)? {
            written.push(dir.join(&file));
            doc.push(Block::Plot { file, alt });
        }
        if matches!(s.mode, Mode::Closed | Mode::Open) && scaling::swept(&s.rows) {
            doc.heading(3, format!("Server CPUs — {}", s.title()));
            doc.text(scaling::NOTE);
            let (table, rows) = scaling::table(&s.rows);
            let rows = rows.into_iter().map(index_of).collect();
            doc.push(Block::Table { table, rows });
            for (file, alt) in scaling::plots(dir, &s.stem(), &s.title(), &s.rows)? {
                written.push(dir.join(&file));
                doc.push(Block::Plot { file, alt });
            }
        }
    }
    for (title, text, table, rows) in beside::sections(report.rows) {
        let rows = rows.into_iter().map(index_of).collect();
        experiment_section(&mut doc, title, &text, table, rows);
    }
    for (file, alt) in beside::plots(dir, report.rows)? {
        written.push(dir.join(&file));
        doc.push(Block::Plot { file, alt });
    }
    let slo = Duration::from_secs_f64(report.settings.slo_p99_us / 1e6);
    for (title, text, table, rows) in rates::sections(report.rows) {
        let rows = rows.into_iter().map(index_of).collect();
        experiment_section(&mut doc, title, &text, table, rows);
    }
    for (file, alt) in rates::plots(dir, report.rows, slo)? {
        written.push(dir.join(&file));
        doc.push(Block::Plot { file, alt });
    }
    footer(&mut doc);
    let index = dir.join("index.md");
    fs::write(&index, doc.to_markdown())?;
    written.push(index);
    let page = html::page(dir, &page_title(report), &facts(report), &doc)?;
    let index = dir.join("index.html");
    fs::write(&index, page)?;
    written.push(index);
    Ok(written)
}

/// What run.json holds: the machine, the settings, how long the run took. Fields a later
/// version added are left at their defaults when an older file lacks them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// How long the run took, seconds.
    pub wall_s: f64,
    /// The run was interrupted before the end.
    pub interrupted: bool,
}

/// Reads a report folder's results.json (required) and run.json (the machine and settings;
/// `None` when it is missing).
pub fn read(dir: &Path) -> io::Result<(Vec<Row>, Option<RunRecord>)> {
    let json = dir.join("results.json");
    let text = fs::read_to_string(&json)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", json.display())))?;
    let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", json.display()),
        )
    })?;
    let run = dir.join("run.json");
    let record = match fs::read_to_string(&run) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", run.display()),
            )
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", run.display()))),
    };
    Ok((rows, record))
}

/// `server-models report DIR`: renders index.md, index.html and the plots again from the
/// folder's results.json and run.json, running nothing. results.json and run.json are left as
/// they are. Returns the files written.
pub fn rerender(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let (rows, record) = read(dir)?;
    let missing = record.is_none();
    let record = record.unwrap_or_default();
    let report = Report {
        machine: &record.machine,
        settings: &record.settings,
        wall_s: record.wall_s,
        interrupted: record.interrupted,
        rows: &rows,
        unknown_run: missing,
    };
    render(dir, &report)
}

fn page_title(report: &Report) -> String {
    match report.machine.date.as_str() {
        "" => "server-models: compare".to_string(),
        date => format!("server-models: compare — {date}"),
    }
}

/// The machine and the settings, as (label, value) pairs for the top of the page: the
/// settings read generically from run.json's object, so a setting added later shows too.
fn facts(report: &Report) -> Vec<(&'static str, Vec<(String, String)>)> {
    let m = report.machine;
    let mut machine = vec![
        ("kernel".to_string(), m.kernel.clone()),
        ("CPU".to_string(), m.cpu_model.clone()),
        ("CPUs online".to_string(), m.cores.to_string()),
        ("memory".to_string(), table::bytes(m.memory_bytes as f64)),
        (
            "load average at the start".to_string(),
            m.load_average.clone(),
        ),
        ("date (UTC)".to_string(), m.date.clone()),
        ("whole run".to_string(), format!("{:.0} s", report.wall_s)),
    ];
    if report.unknown_run {
        machine = vec![(
            "run.json".to_string(),
            "missing: the machine and the settings are unknown".to_string(),
        )];
    }
    let settings = match serde_json::to_value(report.settings) {
        // A setting left at nothing (no preset, no rate, no baseline) is not shown.
        Ok(serde_json::Value::Object(map)) if !report.unknown_run => map
            .into_iter()
            .filter(|(_, v)| match v {
                serde_json::Value::Null => false,
                serde_json::Value::String(s) => !s.is_empty(),
                serde_json::Value::Array(a) => !a.is_empty(),
                _ => true,
            })
            .map(|(k, v)| (k.replace('_', " "), value_text(&v)))
            .collect(),
        _ => Vec::new(),
    };
    vec![("Machine", machine), ("Settings", settings)]
}

/// A JSON value as it reads in a list of settings: arrays joined, null as a dash.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.is_empty() => "none".to_string(),
        serde_json::Value::Array(items) => {
            items.iter().map(value_text).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

fn header(doc: &mut Doc, report: &Report) {
    let m = report.machine;
    let s = report.settings;
    doc.heading(1, "server-models: compare");
    if report.unknown_run {
        doc.text("run.json is missing: the machine and the settings of this run are unknown.");
    } else {
        doc.text(format!(
            "Measured {} on {} ({} CPUs, {} of memory), {}; load average at the start {}.",
            m.date,
            m.cpu_model,
            m.cores,
            table::bytes(m.memory_bytes as f64),
            m.kernel,
            m.load_average
        ));
    }
    let list = |cpus: &Option<Vec<usize>>, first: Option<usize>| {
        cpus.as_ref()
            .map(|c| Cpus::of(c.iter().copied()))
            .or(first.map(Cpus::from))
    };
    let pinning = match (list(&s.server_cpus, s.server_cpu), list(&s.load_cpus, s.client_cpu)) {
        (Some(server), Some(client)) if server.len() == 1 && client.len() == 1 => {
            format!("Each server ran pinned to CPU {server}; the load generator and the harness to CPU {client}.")
        }
        (Some(server), Some(client)) => format!(
            "Each server ran pinned to CPUs {server}{}; the load generator ({} thread{}, one per CPU) and \
             the harness to CPUs {client}.",
            match s.server_cores.as_slice() {
                [] => String::new(),
                cores => format!(
                    " (the models that use more than one swept over the lowest {} of them)",
                    cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
                ),
            },
            client.len(),
            if client.len() == 1 { "" } else { "s" }
        ),
        _ => "Nothing was pinned (fewer than two CPUs, or --no-pin): server and client shared the CPUs.".into(),
    };
    doc.text(format!(
        "{pinning} Every point ran on a fresh server: {:.2} s of warm-up, then a {:.2} s measured window; \
         figures are the median of {} run{} per point (errors summed). Workers: {}. The whole run took {:.0} s{}.",
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
    ));
    if !s.load_via.is_empty() {
        let prefixes: Vec<String> = s.load_via.iter().map(|p| format!("`{p}`")).collect();
        doc.text(format!(
            "The load ran as {} process{}, one through each of {}, against the server at {} (as \
             they saw it); the connections were split among them and their latency histograms merged \
             exactly (`load_parts` in results.json holds each one's share). The server listened on {} \
             and was measured here, over the window all of them measured at once.",
            s.load_via.len(),
            if s.load_via.len() == 1 { "" } else { "es" },
            prefixes.join(", "),
            s.addr.as_deref().unwrap_or("?"),
            s.listen
        ));
    }
    if let Some(dir) = &s.baseline {
        doc.text(format!(
            "Compared with the run in `{dir}`: what changed past the noise is in [diff.md](diff.md) \
             and [diff.html](diff.html)."
        ));
    }
    doc.text(
        "What every column means: the list at the end of this page (and the `compare` section of \
         the README). In short — CPU is the server's whole process tree (reaped children included), \
         user+sys apart; PSS counts a page shared by forked processes once (RSS, beside it, once per \
         process); a row marked client-bound measured the load generator more than the server.",
    );
    // An older run.json says nothing of syscalls: nor does its report.
    if !s.syscalls.is_empty() {
        doc.text(format!(
        "Syscalls: {}. Kernel memory per idle connection (kernel/conn) is the growth of the slab \
         caches, kernel stacks, page tables and TCP memory, less the harness's own client sockets; \
         total/conn is it plus mem/conn.",
        s.syscalls
    ));
    }
    if !s.idle_beside.is_empty() {
        let busy: Vec<String> = s.beside_connections.iter().map(|c| c.to_string()).collect();
        let ks: Vec<String> = s.idle_beside.iter().map(|k| k.to_string()).collect();
        doc.text(format!(
            "Busy beside idle: {} busy connection{} beside K = {} idle ones.",
            busy.join(", "),
            if busy == ["1"] { "" } else { "s" },
            ks.join(", ")
        ));
    }
    if let Some(rates) = &s.rates {
        let conns: Vec<String> = s.rate_connections.iter().map(|c| c.to_string()).collect();
        doc.text(format!(
            "Offered load: rates {rates} (requests/s) over {} connections; a knee needs p99 under {} µs.",
            conns.join(", "),
            table::micros(s.slo_p99_us)
        ));
    }
}

/// One section of an experiment (busy beside idle, offered load): its heading, its table
/// (`rows`: the index in results.json of each body row's row, or none for a summary), and its
/// text, one paragraph per blank-line-separated part.
fn experiment_section(
    doc: &mut Doc,
    title: String,
    text: &str,
    table: table::Table,
    rows: Vec<usize>,
) {
    doc.heading(2, title);
    doc.push(Block::Table { table, rows });
    for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        doc.text(paragraph.trim());
    }
}

/// The columns' definitions and the files of the folder, after the tables.
fn footer(doc: &mut Doc) {
    let used = doc.headers();
    let terms: Vec<(String, String)> = table::COLUMNS
        .iter()
        .filter(|c| used.contains(&c.0))
        .map(|c| (c.0.to_string(), c.1.to_string()))
        .collect();
    doc.heading(2, "Columns");
    doc.push(Block::Definitions(terms));
    doc.heading(2, "Files");
    doc.push(Block::List(vec![
        "`results.json`: one object per row, every figure (null when not measured).".into(),
        "`results.csv`: the same, one line per row.".into(),
        "`run.json`: the machine and the settings.".into(),
        "`index.md`, `index.html`: this report (`server-models report DIR` renders both again from results.json and run.json).".into(),
    ]));
}

const SYSCALL_NOTE: &str = "Counted by the kernel's syscall tracepoints (perf counters inherited \
by the server's every thread and child), in a run of its own at each point of the connection sweep \
and churn (a 250 ms window at most up to 100 connections), so that the tracepoints' cost is in none of the other figures. Per request (churn: per connection), by family: recv = read, \
readv, recvfrom, recvmsg; send = write, writev, sendto, sendmsg; wait = epoll_wait, epoll_pwait, \
select, pselect6, poll, ppoll, io_uring_enter; close = close, shutdown; futex = futex, sched_yield; \
task = clone, clone3, fork, vfork, exit, exit_group, wait4, waitid. ev/wait: readiness reports \
returned per wait call, or io_uring completions per io_uring_enter.";

const CLASSIC_NOTE: &str = "Stevens' experiment (UNP ch. 30): each client slot connects, sends one \
request, reads the whole reply and closes (SO_LINGER 0), again and again. CPU µs/conn is the \
server's whole tree over the window divided by the connections served; *process control* is that \
figure less the iterative server's at the same point: what the design spends on forking, waking, \
handing over and creating, beyond the TCP work every design does.";

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
            let by_family = |value: &dyn Fn(&Row) -> Option<f64>, y_desc: &str| {
                family_panels(&s.rows, lines(value), y_desc)
            };
            plots::panels(
                &dir.join(&file),
                &title,
                &plots::CONNECTIONS,
                &by_family(&|r| r.requests_per_sec, "requests/s"),
                YScale::Shared,
                &|v| table::count(*v),
            )?;
            out.push((file, title));
            let file = format!("p99_{}.svg", s.stem());
            let title = format!("p99 latency — {}", s.title());
            plots::panels(
                &dir.join(&file),
                &title,
                &plots::CONNECTIONS,
                &by_family(&|r| r.latency_us.map(|l| l.p99), "p99 latency (log scale)"),
                YScale::SharedLog,
                &|v| plots::si_micros(*v),
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
            if let Some(plot) = syscall_plot(dir, s, &ok, &models)? {
                out.push(plot);
            }
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
        Mode::Churn => {
            if let Some(plot) = syscall_plot(dir, s, &ok, &models)? {
                out.push(plot);
            }
        }
    }
    Ok(out)
}

/// The lines of a section split into one panel per model family (blocking, readiness,
/// completion), in that order, so that no panel holds more lines than can be told apart.
fn family_panels(rows: &[&Row], lines: Vec<Line>, y_desc: &str) -> Vec<Panel> {
    let family_of = |label: &str| {
        let model = rows
            .iter()
            .find(|r| r.label() == label)
            .map_or(label, |r| r.model.as_str());
        family::family(model)
    };
    let mut panels: Vec<(Family, Panel)> = Vec::new();
    for line in lines {
        let f = family_of(&line.label);
        match panels.iter_mut().find(|p| p.0 == f) {
            Some((_, panel)) => panel.lines.push(line),
            None => panels.push((
                f,
                Panel {
                    title: format!("{} models", f.name()),
                    y_desc: y_desc.to_string(),
                    lines: vec![line],
                },
            )),
        }
    }
    panels.sort_by_key(|p| p.0);
    panels.into_iter().map(|p| p.1).collect()
}

/// The syscalls plot of a section, when any row has its syscalls counted.
fn syscall_plot(
    dir: &Path,
    s: &Section,
    ok: &[&Row],
    models: &[String],
) -> io::Result<Option<(String, String)>> {
    let bars: Vec<SyscallBars> = models
        .iter()
        .map(|m| SyscallBars {
            label: m.clone(),
            bars: ok
                .iter()
                .filter(|r| r.label() == *m)
                .filter_map(|r| {
                    let by_family = syscalls::by_family(r.syscalls.as_ref()?);
                    Some((r.connections, by_family.into_iter().map(|f| f.1).collect()))
                })
                .collect(),
        })
        .filter(|b| !b.bars.is_empty())
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let mut families: Vec<&str> = syscalls::FAMILIES.iter().map(|f| f.0).collect();
    families.push("other");
    let file = format!(
        "syscalls_{}{}.svg",
        s.stem(),
        if s.mode == Mode::Churn { "_churn" } else { "" }
    );
    let title = format!("Syscalls per request — {}", s.title());
    plots::syscalls(&dir.join(&file), &title, &bars, &families)?;
    Ok(Some((file, title)))
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
