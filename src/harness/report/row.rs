//! One row of the comparison: one model at one point of the sweep, with every figure the design
//! defines, or the reason the model could not reach the point.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::diff::Spread;
pub use crate::harness::measure::kernel_mem::CacheShare;

/// How the load drove the server at this point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every connection keeps one request outstanding.
    Closed,
    /// Requests at a fixed rate; latency from the scheduled send time.
    Open,
    /// Connect, one request, close.
    Churn,
    /// Connections opened, one request each, then held idle: memory per connection.
    Idle,
}

impl Mode {
    /// The name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
            Mode::Churn => "churn",
            Mode::Idle => "idle",
        }
    }
}

/// Whether the point was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured; the figures are filled in.
    Ok,
    /// The model cannot serve this point by design (one client at a time, a pool smaller than
    /// the clients, select past FD_SETSIZE); `note` says which. Not run.
    Unreachable,
    /// Run, but it failed: the server died, the load timed out, nothing was answered; `note`
    /// says what happened.
    Failed,
    /// Reachable, but left out by the run's choice (the default sweep's time); `note` says why
    /// and how to run it.
    Skipped,
}

/// Latency percentiles (µs) and errors by kind, as the load generator reports them.
pub use crate::harness::load::{Errors, Latency};

/// Peak task counts over the server's process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tasks {
    /// Threads, every process's main thread included.
    pub threads: u64,
    /// Processes.
    pub processes: u64,
}

/// Context switches per request, over every task of the server's tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SwitchRates {
    /// The server gave up the CPU itself (blocked).
    pub voluntary: f64,
    /// The scheduler took the CPU away.
    pub involuntary: f64,
}

/// Each figure of a busy-beside-idle row divided by the same figure of the same model with no
/// idle connection beside the busy ones (K = 0): 1.0 is flat, 2.0 twice the cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Requests per second.
    pub requests_per_sec: Option<f64>,
    /// Median latency.
    pub p50: Option<f64>,
    /// 99th percentile latency.
    pub p99: Option<f64>,
    /// 99.9th percentile latency.
    pub p999: Option<f64>,
    /// Server CPU per request.
    pub cpu_us_per_request: Option<f64>,
}

/// One model at one point of the sweep. Figures are `None` (null in JSON, empty in CSV) when the
/// point was not measured or the figure does not apply (no requests in an idle row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The model's name.
    pub model: String,
    /// `echo` or `http`.
    pub protocol: String,
    /// How the load drove it.
    pub mode: Mode,
    /// Connections open at once (churn: connection slots; idle: connections held).
    pub connections: usize,
    /// Echo message size in bytes; 0 for HTTP, whose request is always `GET /`.
    pub size: usize,
    /// Open loop: requests per second asked for.
    pub rate: Option<f64>,
    /// The server's `workers` setting, as it announced it.
    pub workers: Option<usize>,
    /// How prefork's children took turns at `accept` (`none`, `fcntl`, `flock`, `mutex`), when
    /// the run compared the locks; absent for every other model.
    #[serde(default)]
    pub accept_lock: Option<String>,
    /// Measured, unreachable or failed.
    pub status: Status,
    /// Why the point is unreachable or failed, or what to know about the figures.
    pub note: String,
    /// How many runs the figures are the median of.
    pub runs: usize,
    /// Requests completed in the measured window (churn: connections).
    pub requests: Option<u64>,
    /// Requests per second in the window.
    pub requests_per_sec: Option<f64>,
    /// Latency percentiles, µs.
    pub latency_us: Option<Latency>,
    /// Server CPU (user + sys, whole tree) per request, µs.
    pub cpu_us_per_request: Option<f64>,
    /// Server user CPU per request, µs.
    pub cpu_user_us_per_request: Option<f64>,
    /// Server kernel CPU per request, µs.
    pub cpu_sys_us_per_request: Option<f64>,
    /// Churn rows: CPU µs per connection less the iterative server's at the same point — the
    /// cost of the model's process control (Stevens, UNP Figure 30.1). Absent without an
    /// iterative row to subtract.
    #[serde(default)]
    pub process_control_us_per_connection: Option<f64>,
    /// Peak of the summed PSS of the server's tree, bytes.
    pub pss_peak_bytes: Option<u64>,
    /// Peak of the summed RSS, bytes (counts shared pages once per process).
    pub rss_peak_bytes: Option<u64>,
    /// Idle rows: (PSS with N idle connections − PSS with none) / N. Other rows: the same
    /// figure from the idle row of this model with as many connections, if there is one.
    pub bytes_per_connection: Option<f64>,
    /// Idle rows: the PSS with no connection, bytes.
    pub pss_base_bytes: Option<u64>,
    /// Peak threads and processes of the server's tree.
    pub peak_tasks: Option<Tasks>,
    /// Context switches per request.
    pub context_switches_per_request: Option<SwitchRates>,
    /// Every syscall of the server's tree per request, counted by the kernel's tracepoints in
    /// a run of its own at the same point (`null` where the kernel refused: the note says why).
    #[serde(default)]
    pub syscalls_per_request: Option<f64>,
    /// The same by syscall: each one called, and `other` for the rest (a syscall not listed was
    /// not called).
    #[serde(default)]
    pub syscalls: Option<BTreeMap<String, f64>>,
    /// Readiness reports returned per wait call (epoll_wait, poll, select), or io_uring
    /// completions per io_uring_enter; `null` for a model that never waits.
    #[serde(default)]
    pub events_per_wait: Option<f64>,
    /// Idle rows: what the kernel holds per connection for the server (slab caches, kernel
    /// stacks, page tables, TCP memory; the clients' sockets taken off), bytes.
    #[serde(default)]
    pub kernel_bytes_per_connection: Option<f64>,
    /// Idle rows: that figure by cache, named as /proc/slabinfo names it.
    #[serde(default)]
    pub kernel_caches: Option<BTreeMap<String, CacheShare>>,
    /// Failed connects and requests, by kind.
    pub errors: Errors,
    /// The load generator's CPU over the window, % of one core.
    pub client_cpu_percent: Option<f64>,
    /// The load generator's CPU passed 90%: the figures may measure the client, not the server.
    pub client_bound: bool,
    /// Requests in flight per connection (1: one at a time, no pipelining).
    #[serde(default = "one")]
    pub pipeline: usize,
    /// The idle connections held open beside the loaded ones: K in the busy-beside-idle sweep,
    /// 0 for every other loaded row (none were); `None` for the idle rows, whose connections
    /// are the idle ones.
    #[serde(default)]
    pub idle_beside: Option<usize>,
    /// Busy-beside-idle rows: each figure against the same model's row with no idle connection.
    #[serde(default)]
    pub vs_no_idle: Option<Ratios>,
    /// Offered-load rows: the open-loop rate offered, requests/s; `None` for every other row.
    #[serde(default)]
    pub offered_rate: Option<f64>,
    /// Offered-load rows: this is the highest rate at which the model kept up (achieved ≥ 0.98
    /// × offered) with p99 under the bound — its knee.
    #[serde(default)]
    pub knee: bool,
    /// Open-loop rows: latency measured from each request's actual send instead of its
    /// scheduled time, the figure a client with coordinated omission would report.
    #[serde(default)]
    pub latency_from_send_us: Option<Latency>,
    /// The server's whole process group was stopped (SIGSTOP, then SIGCONT) for this many
    /// milliseconds in the middle of the window: the coordinated-omission demonstration.
    #[serde(default)]
    pub server_stopped_ms: Option<f64>,
    /// The CPUs the server was pinned to; absent when nothing was pinned.
    #[serde(default)]
    pub server_cpus: Option<Vec<usize>>,
    /// The CPUs the load generator was pinned to on this host (with `--load-via`, the prefix
    /// processes'); absent when not pinned.
    #[serde(default)]
    pub load_cpus: Option<Vec<usize>>,
    /// Connections each worker accepted, in worker order, from the `served per worker:` line
    /// the multi-worker models print at shutdown, summed over the repeats; absent for a model
    /// with one worker.
    #[serde(default)]
    pub served_per_worker: Option<Vec<u64>>,
    /// With `--load-via`: each load process's share and what it reported (of the first run),
    /// beside the row's figures merged from their histograms.
    #[serde(default)]
    pub load_parts: Option<Vec<LoadPart>>,
    /// Each figure's range over the repeats (`--repeat` 2 or more), by its path in this object
    /// (`requests_per_sec`, `latency_us.p99`, ...): the noise `diff` measures changes against.
    #[serde(default)]
    pub spread: Option<BTreeMap<String, Spread>>,
}

/// One load process of several (`compare --load-via`): its share of the connections and what
/// it measured, before its histogram was merged with the others'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadPart {
    /// The prefix it ran through (`ssh host`, `ip netns exec client`).
    pub via: String,
    /// Its connections.
    pub connections: usize,
    /// Requests it completed in its window.
    pub requests: u64,
    /// Its requests per second.
    pub requests_per_sec: f64,
    /// Its own latency percentiles, µs.
    pub latency_us: Latency,
    /// Its CPU over its window, % of one core.
    pub client_cpu_percent: f64,
}

fn one() -> usize {
    1
}

/// Past this share of one core, the load generator is taken to limit the figures.
pub const CLIENT_BOUND_PERCENT: f64 = 90.0;

impl Row {
    /// A row for a point with nothing measured yet.
    pub fn new(model: &str, protocol: &str, mode: Mode, connections: usize, size: usize) -> Row {
        Row {
            model: model.to_string(),
            protocol: protocol.to_string(),
            mode,
            connections,
            size,
            rate: None,
            workers: None,
            accept_lock: None,
            status: Status::Ok,
            note: String::new(),
            runs: 0,
            requests: None,
            requests_per_sec: None,
            latency_us: None,
            cpu_us_per_request: None,
            cpu_user_us_per_request: None,
            cpu_sys_us_per_request: None,
            process_control_us_per_connection: None,
            pss_peak_bytes: None,
            rss_peak_bytes: None,
            bytes_per_connection: None,
            pss_base_bytes: None,
            peak_tasks: None,
            context_switches_per_request: None,
            syscalls_per_request: None,
            syscalls: None,
            events_per_wait: None,
            kernel_bytes_per_connection: None,
            kernel_caches: None,
            errors: Errors::default(),
            client_cpu_percent: None,
            client_bound: false,
            server_cpus: None,
            load_cpus: None,
            served_per_worker: None,
            load_parts: None,
            pipeline: 1,
            idle_beside: None,
            vs_no_idle: None,
            offered_rate: None,
            knee: false,
            latency_from_send_us: None,
            server_stopped_ms: None,
            spread: None,
        }
    }

    /// The model's name, with its accept lock when it has one: `prefork (fcntl)`.
    pub fn label(&self) -> String {
        match &self.accept_lock {
            Some(lock) => format!("{} ({lock})", self.model),
            None => self.model.clone(),
        }
    }

    /// PSS and kernel memory per connection together, when both are known.
    pub fn total_bytes_per_connection(&self) -> Option<f64> {
        Some(self.bytes_per_connection? + self.kernel_bytes_per_connection?)
    }

    /// Adds a clause to the note.
    pub fn add_note(&mut self, clause: impl AsRef<str>) {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(clause.as_ref());
    }

    /// Marks the row as not measured, for `reason`.
    pub fn with_status(mut self, status: Status, reason: impl Into<String>) -> Row {
        self.status = status;
        self.note = reason.into();
        self
    }
}
