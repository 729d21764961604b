//! The tables: the same columns printed to the terminal (aligned text) and to index.md
//! (markdown), one table for loaded runs, one for churn, one for idle memory.

use super::row::{Mode, Row, Status};
use crate::harness::measure::syscalls;

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

    /// Inserts a column before column `at` (at the end if past it), one cell per row.
    pub fn insert_column(&mut self, at: usize, header: &str, cells: Vec<String>) {
        let at = at.min(self.headers.len());
        self.headers.insert(at, header.to_string());
        for (row, cell) in self.rows.iter_mut().zip(cells) {
            row.insert(at.min(row.len()), cell);
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

/// What each column of the tables means: the one source of the definitions that index.md lists
/// and index.html shows on hover (the README's column table says the same at more length).
/// Every figure is the server's, never the client's, unless it says otherwise.
pub const COLUMNS: &[(&str, &str)] = &[
    (
        "model",
        "the model (`server-models list`), with its accept lock when the run compared them",
    ),
    ("design", "the model, as UNP ch. 30 names the designs"),
    (
        "proto",
        "the protocol: echo, or HTTP/1.1 keep-alive (`GET /`)",
    ),
    ("conns", "connections open at once"),
    (
        "slots",
        "churn: connection slots, each connecting, sending one request and closing, again and again",
    ),
    (
        "size",
        "echo message size; - for HTTP, whose request is always `GET /`",
    ),
    (
        "CPUs",
        "CPUs the server was pinned to (its workers, for the models with one per CPU)",
    ),
    ("workers", "the server's --workers, as it announced it"),
    (
        "req/s",
        "request/response pairs completed in the measured window, per second",
    ),
    (
        "conn/s",
        "churn: connections completed (connect, one request, close) in the window, per second",
    ),
    (
        "p50 µs",
        "median latency per request, from the load generator's HDR histogram (open loop: from the scheduled send time; churn: from connect to the full reply)",
    ),
    (
        "p99 µs",
        "99th-percentile latency per request, from the HDR histogram (open loop: from the scheduled send time)",
    ),
    (
        "p99.9 µs",
        "99.9th-percentile latency per request, from the HDR histogram",
    ),
    (
        "CPU µs/req",
        "user + sys CPU of the server's whole process tree over the window (reaped children included), divided by the requests",
    ),
    (
        "CPU µs/conn",
        "churn: user + sys CPU of the server's whole process tree over the window, divided by the connections served",
    ),
    ("usr+sys", "that CPU per request, user and kernel apart"),
    (
        "process control µs/conn",
        "CPU per connection less the iterative server's at the same point: what the design spends on forking, waking, handing over and creating (UNP Figure 30.1)",
    ),
    (
        "PSS",
        "peak over the run of the summed proportional set size of the server's tree: a page shared by N processes counts 1/N in each",
    ),
    (
        "RSS",
        "peak summed resident set size, beside PSS to show how much forking shares (RSS counts a shared page once per process)",
    ),
    (
        "mem/conn",
        "(PSS with N idle connections − PSS with none) / N, from the idle sweep with the same N",
    ),
    (
        "bytes/conn",
        "(PSS with N idle connections − PSS with none) / N: a thread's stack, a process's pages, the model's buffers",
    ),
    (
        "PSS none",
        "PSS of the server's tree with no connection, after one served and closed",
    ),
    (
        "PSS idle",
        "PSS of the server's tree with N connections held idle after one round trip each",
    ),
    ("RSS idle", "RSS of the tree with the N idle connections"),
    (
        "thr/proc",
        "peak threads (every task) and processes in the server's tree",
    ),
    (
        "csw/req",
        "voluntary / involuntary context switches per request, over every task of the tree",
    ),
    (
        "csw/conn",
        "churn: voluntary / involuntary context switches per connection, over every task of the tree",
    ),
    (
        "sys/req",
        "every syscall of the server's whole tree per request, counted by the kernel's tracepoints in a run of its own; n/a where the kernel refuses (the header says why)",
    ),
    (
        "sys/conn",
        "churn: every syscall of the server's whole tree per connection, counted by the kernel's tracepoints in a run of its own",
    ),
    (
        "ev/wait",
        "events per wait: readiness reports returned per wait call (epoll_wait, poll, select), or io_uring completions per io_uring_enter; - for a model that never waits",
    ),
    (
        "kernel/conn",
        "idle: what the kernel holds per connection for the server (slab caches, kernel stacks, page tables, TCP memory), the harness's own client sockets taken off",
    ),
    ("total/conn", "idle: kernel/conn plus bytes/conn"),
    (
        "kernel, largest",
        "idle: the three largest kernel shares of a connection, by cache",
    ),
    (
        "recv",
        "syscalls per request: read, readv, recvfrom, recvmsg",
    ),
    (
        "send",
        "syscalls per request: write, writev, sendto, sendmsg",
    ),
    (
        "wait",
        "syscalls per request: epoll_wait, epoll_pwait, epoll_pwait2, select, pselect6, poll, ppoll, io_uring_enter",
    ),
    ("epoll_ctl", "syscalls per request: epoll_ctl"),
    ("accept", "syscalls per request: accept, accept4"),
    ("close", "syscalls per request: close, shutdown"),
    ("futex", "syscalls per request: futex, sched_yield"),
    (
        "task",
        "syscalls per request: clone, clone3, fork, vfork, exit, exit_group, wait4, waitid",
    ),
    ("other", "syscalls per request: every other syscall"),
    (
        "served per worker",
        "connections each worker accepted, as the server's meter printed them at shutdown (summed over the repeats)",
    ),
    (
        "errors",
        "refused, reset, timed-out, mismatched and other failures the load generator counted over the whole run",
    ),
    (
        "point",
        "diff: the model and the point of the sweep, matched between the two runs",
    ),
    (
        "figure",
        "diff: the figure's path in results.json (`latency_us.p99`, ...)",
    ),
    (
        "old",
        "diff: the figure in the old run (the median of its repeats)",
    ),
    ("new", "diff: the figure in the new run"),
    ("ratio", "diff: new / old"),
    (
        "noise",
        "diff: the change a figure must pass to count: the larger of the two runs' spreads over their repeats ((max − min) / median) and the floor (--threshold)",
    ),
    (
        "verdict",
        "diff: better or worse, past the noise (requests/s up is better; latency, CPU and memory down)",
    ),
    (
        "note",
        "why a row is empty (unreachable, failed), client-bound when the load generator's CPU passed 90% of its cores, the error kinds",
    ),
    (
        "idle",
        "busy beside idle: K, the idle connections held open beside the busy ones (each after one round trip); a figure's ratio to the same model's at K = 0 follows it in brackets",
    ),
    (
        "CPU µs/req, K = 0",
        "busy beside idle: server CPU µs per request with no idle connection beside the busy ones, the base of the ratios beside it",
    ),
    (
        "offered",
        "offered-load sweep: the rate the open loop offered, requests/s over all connections",
    ),
    (
        "achieved",
        "the requests per second completed at that offered rate",
    ),
    (
        "kept",
        "achieved over offered, in percent; a rate is kept at 98% or more",
    ),
    (
        "p99 from send",
        "99th-percentile latency of the same requests timed from their actual send, not their schedule: what a client with coordinated omission reports",
    ),
    (
        "client CPU",
        "the load generator's own CPU over the window, in percent of one core",
    ),
    (
        "knee req/s",
        "each model's knee: the highest offered rate kept (achieved ≥ 98% of offered) with p99 under the run's bound (`--slo-p99`)",
    ),
    (
        "p99 µs at knee",
        "99th-percentile latency at the knee, from the schedule",
    ),
    (
        "CPU µs/req at knee",
        "server CPU µs per request at the knee",
    ),
    (
        "next rate tried",
        "the lowest offered rate above the knee that was run, which missed (not kept, or p99 over the bound)",
    ),
    (
        "achieved there",
        "requests per second achieved at the next rate tried",
    ),
    (
        "p99 µs there",
        "99th-percentile latency at the next rate tried",
    ),
    (
        "rate",
        "the open loop's offered rate, requests/s over all connections",
    ),
    (
        "server stopped",
        "how long the server's process group was stopped (SIGSTOP, then SIGCONT) in the middle of the window",
    ),
    (
        "latency measured from",
        "the schedule (each request's due time: the corrected figure) or the actual send (coordinated omission)",
    ),
    ("p90 µs", "90th-percentile latency per request"),
    ("max µs", "the slowest request"),
];

/// The definition of a column, if [`COLUMNS`] has it.
pub fn definition(header: &str) -> Option<&'static str> {
    if header.starts_with("× at ") && header.ends_with(" idle") {
        return Some(
            "busy beside idle: server CPU µs per request with that many idle connections beside the busy ones, over the same model's with none (K = 0)",
        );
    }
    COLUMNS.iter().find(|c| c.0 == header).map(|c| c.1)
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
        "sys/req",
        "ev/wait",
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
        "sys/conn",
        "ev/wait",
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
        "kernel/conn",
        "total/conn",
        "kernel, largest",
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
                opt(ok, r.kernel_bytes_per_connection.map(bytes)),
                opt(ok, r.total_bytes_per_connection().map(bytes)),
                opt(ok, r.kernel_caches.as_ref().map(largest_caches)),
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

/// The three largest kernel shares of a connection in the total (sockstat's machine-wide TCP
/// memory is not): `TCP 2.3 KiB, KernelStack 16.0 KiB, ...`.
fn largest_caches(caches: &std::collections::BTreeMap<String, super::row::CacheShare>) -> String {
    let mut v: Vec<(&String, f64)> = caches
        .iter()
        .filter(|(n, _)| n.as_str() != crate::harness::measure::kernel_mem::TCP_MEM)
        .map(|(n, c)| (n, c.bytes_per_connection))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .take(3)
        .filter(|(_, b)| *b >= 1.0)
        .map(|(n, b)| format!("{n} {}", bytes(*b)))
        .collect::<Vec<_>>()
        .join(", ")
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
    pub const ERRORS: usize = 13;
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
        opt(
            ok,
            Some(
                r.syscalls_per_request
                    .map_or("n/a".into(), |v| format!("{v:.2}")),
            ),
        ),
        opt(
            ok,
            Some(r.events_per_wait.map_or("-".into(), |v| format!("{v:.2}"))),
        ),
        opt(ok, Some(r.errors.total().to_string())),
    ]
}

/// The syscall table of loaded or churn rows: calls per request by family (see
/// [`syscalls::FAMILIES`]) and events per wait.
pub fn syscall_table(rows: &[&Row]) -> Table {
    let mut headers = vec!["model", "conns", "sys/req"];
    headers.extend(syscalls::FAMILIES.iter().map(|f| f.0));
    headers.extend(["other", "ev/wait"]);
    let body = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| {
            let mut cells = vec![r.label(), r.connections.to_string()];
            match (&r.syscalls, r.syscalls_per_request) {
                (Some(by_name), Some(total)) => {
                    cells.push(format!("{total:.2}"));
                    cells.extend(syscalls::by_family(by_name).into_iter().map(|(_, v)| {
                        if v == 0.0 {
                            "0".into()
                        } else {
                            format!("{v:.3}")
                        }
                    }));
                }
                _ => cells.extend((0..syscalls::FAMILIES.len() + 2).map(|_| "n/a".to_string())),
            }
            cells.push(r.events_per_wait.map_or("-".into(), |v| format!("{v:.2}")));
            cells
        })
        .collect();
    Table::new(&headers, body)
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

    /// Syscalls not counted read `n/a`; a model that never waits shows `-` for events per wait;
    /// the syscall table breaks the total down by family, `other` last.
    #[test]
    fn syscall_cells() {
        let plain = Row::new("epoll-lt", "echo", Mode::Closed, 10, 64);
        let t = load_table(&[&plain]);
        let at = |name: &str| t.headers.iter().position(|h| h == name).expect(name);
        assert_eq!(t.rows[0][at("sys/req")], "n/a");
        assert_eq!(t.rows[0][at("ev/wait")], "-");
        let mut counted = plain.clone();
        counted.syscalls_per_request = Some(2.5);
        counted.events_per_wait = Some(12.0);
        counted.syscalls = Some(
            [
                ("recvfrom", 1.0),
                ("sendto", 1.0),
                ("epoll_wait", 0.25),
                ("mmap", 0.25),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        );
        let t = syscall_table(&[&counted]);
        let cells = &t.rows[0];
        assert_eq!(cells[2], "2.50");
        assert_eq!(
            (cells[3].as_str(), cells[4].as_str(), cells[5].as_str()),
            ("1.000", "1.000", "0.250")
        );
        assert_eq!(t.headers[t.headers.len() - 2], "other");
        assert_eq!(cells[cells.len() - 2], "0.250");
        assert_eq!(cells.last().map(String::as_str), Some("12.00"));
    }

    /// Every column of every table has a definition to show on hover and list in index.md.
    #[test]
    fn every_column_is_defined() {
        let r = Row::new("poll", "echo", Mode::Closed, 1, 64);
        for t in [
            load_table(&[&r]),
            churn_table(&[&r]),
            classic_table(&[&r]),
            idle_table(&[&r]),
            syscall_table(&[&r]),
        ] {
            for h in &t.headers {
                assert!(definition(h).is_some(), "no definition for column '{h}'");
            }
        }
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
