//! One model at one point under load: a fresh server, the load generator against it, the
//! server's tree sampled throughout; repeated and reduced to medians. Then, where the kernel
//! allows it, one run more with the syscall counters attached ([`syscalls`]): the tracepoints
//! slow every syscall down, so they are never on in the runs whose CPU and latency are reported.
//!
//! Two experiments add to the run: idle connections held open beside the loaded ones before
//! the load starts (busy beside idle), and the server's process group stopped for a moment in
//! the middle of the window (the coordinated-omission demonstration).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, LoadPlan};
use super::{Point, Setup, layout, unreachable};
use crate::harness::load::LoadReport;
use crate::harness::measure::syscalls::{self, CountPlan, Counting, Reading, Window};
use crate::harness::measure::tree::{self, Peaks, Sample, TreeUsage};
use crate::harness::measure::{Sampler, placement};
use crate::harness::report::diff;
use crate::harness::report::row::{
    self, Errors, Latency, LoadPart, Mode, Row, Status, SwitchRates, Tasks,
};
use crate::harness::spawn::{ServerProcess, serve_command_on};
use crate::server::model::Model;

/// How often the server's tree is sampled while the load runs (less often for a large tree;
/// see [`Sampler`]).
const SAMPLE_EVERY: Duration = Duration::from_millis(25);

/// Why a run gave no figures.
pub enum NotMeasured {
    /// The model cannot serve the point by design.
    Unreachable(String),
    /// Something went wrong.
    Failed(String),
}

impl From<io::Error> for NotMeasured {
    fn from(e: io::Error) -> Self {
        NotMeasured::Failed(e.to_string())
    }
}

/// The pool size of the pool models (`prefork`, `thread-pool`) unless `--workers` says
/// otherwise: large enough to serve 100 clients, so that the default sweep shows both what a
/// pool costs and, at 1000 clients, where it stops. (Their own default, one worker per CPU, is
/// one worker on a pinned server.) Other models keep their default: one event loop per CPU.
pub const POOL_WORKERS: usize = 100;

/// A fresh server for `model`, pinned to the point's server CPUs, and its number of workers. `announced` learns the number of
/// workers it announced even when the point then turns out unreachable for it
/// ([`NotMeasured::Unreachable`]), so that the row can say so.
pub fn start_server(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
) -> Result<(ServerProcess, usize), NotMeasured> {
    start_server_with(setup, model, point, announced, &mut |_| Ok(()))
}

/// [`start_server`], with `prepare` given the command before it is spawned (to attach counters).
pub fn start_server_with(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
    prepare: &mut dyn FnMut(&mut Command) -> io::Result<()>,
) -> Result<(ServerProcess, usize), NotMeasured> {
    let cpus = layout::server_cpus(setup.placement.server, point.cpus);
    let workers = layout::workers(model, setup.workers, setup.pool_workers, cpus);
    let workers_arg = workers.map(|w| w.to_string());
    let mut extra: Vec<&str> = match &workers_arg {
        Some(w) => vec!["--workers", w],
        None => vec![],
    };
    if let Some(lock) = point.accept_lock {
        extra.extend(["--accept-lock", lock.name()]);
    }
    let mut command = serve_command_on(
        &std::env::current_exe()?,
        model.name(),
        point.protocol,
        &SocketAddr::new(setup.listen, 0).to_string(),
        &extra,
    );
    if let Some(cpus) = cpus {
        placement::pin_command(&mut command, cpus)?;
    }
    prepare(&mut command)?;
    let server = ServerProcess::start_command(command)?;
    // The listening line says `workers N`; a server that does not say it runs the default,
    // one per CPU it may use.
    let said = server
        .log_tail()
        .lines()
        .find(|l| l.contains("listening on "))
        .and_then(announced_workers);
    let default = match cpus {
        Some(cpus) => cpus.len(),
        None => crate::server::model::Config::default().workers,
    };
    let workers = said.or(workers).unwrap_or(default);
    *announced = Some(workers);
    if let Some(why) = unreachable(model, point.mode, point.held(), workers, setup.fd_limit) {
        return Err(NotMeasured::Unreachable(why));
    }
    Ok((server, workers))
}

/// The `workers N` of a listening line.
pub fn announced_workers(line: &str) -> Option<usize> {
    let rest = line.split("workers ").nth(1)?;
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What one run measured.
struct Measured {
    load: LoadReport,
    window: TreeUsage,
    peaks: Peaks,
    workers: usize,
    /// The server's `served per worker` counts, if it printed them.
    served: Option<Vec<u64>>,
    /// The requests the server's CPU over `window` is divided by: the load's count, or with
    /// several load processes their shares that fall inside the common window.
    requests_in_window: f64,
    /// With `--load-via`, each load process's share and report.
    parts: Option<Vec<LoadPart>>,
    /// Threads of each load process: the load is client-bound past 90% of each.
    load_threads: usize,
}

/// A finished load, local or through prefixes: its report and its window on this host's clock.
struct LoadDone {
    result: LoadReport,
    started: Instant,
    from: Instant,
    to: Instant,
    requests_in_window: f64,
    parts: Option<Vec<LoadPart>>,
}

/// The address a client reaches a server at: a server on every interface (0.0.0.0, ::) is
/// reached on loopback.
pub fn connect_to(listening: SocketAddr) -> SocketAddr {
    match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], listening.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listening.port()))
        }
        _ => listening,
    }
}

/// Runs the point once on a fresh server; `announced` learns the server's worker count even when
/// the point turns out unreachable.
fn measure_once(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
) -> Result<Measured, NotMeasured> {
    run_once(setup, model, point, announced, None).map(|(m, _)| m)
}

/// The longest window of a syscall-counting run, its first try: its figures are counts over
/// requests, thousands of them in a fraction of a second at most points a table holds.
const COUNTING_WINDOW: Duration = Duration::from_millis(250);

/// The longest warm-up before a brief counting window: up to 100 connections are connected and
/// answering well within it.
const COUNTING_WARMUP: Duration = Duration::from_millis(100);

/// A run's warm-up and measured window.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    warmup: Duration,
    duration: Duration,
}

impl Span {
    /// The sweep's own.
    fn of(setup: &Setup) -> Span {
        Span {
            warmup: setup.warmup,
            duration: setup.duration,
        }
    }
}

/// The most connections a brief counting window is used for. Past it, the connections are
/// still ramping up (being accepted, their first requests in flight) a quarter of a second into
/// the window, and a brief window counts that: 0.95 recvfrom per request at 1000 connections,
/// 0.5 accept4 per request at 10 000. There the counting run measures the whole window.
const BRIEF_COUNTING_UP_TO: usize = 100;

/// Runs the point once; with `counting`, the server gets the syscall counters and the second
/// result is what they counted over the window (or why nothing was).
fn run_once(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
    counting: Option<(&CountPlan, Span)>,
) -> Result<(Measured, Option<Result<Window, String>>), NotMeasured> {
    let mut handoff = None;
    let (mut server, workers) =
        start_server_with(setup, model, point, announced, &mut |command| {
            if let Some((plan, _)) = counting {
                handoff = Some(plan.attach(command)?);
            }
            Ok(())
        })?;
    let counters = handoff.map(|h| h.receive().map(Arc::new));
    // A counting run may warm up and measure for less time than the others.
    let Span { warmup, duration } = counting.map_or(Span::of(setup), |c| c.1);
    // The counters' readings at the window's edges: scheduled for instants known in advance
    // (a local load), or taken as each load process says its window opened or closed (through
    // --load-via, whose edges are known only when their lines arrive).
    let readings = Mutex::new(None);
    let marked: Mutex<Vec<Reading>> = Mutex::new(Vec::new());
    let sampler = Sampler::start(server.pid() as i32, SAMPLE_EVERY)?;
    // Busy beside idle: the idle connections first, each after one round trip, held (by this
    // process, where they cost the server nothing but their being watched) until the end.
    let held = match point.idle_beside {
        0 => Vec::new(),
        k => super::idle::hold(server.addr(), point.protocol, point.size, k, setup)?,
    };
    let plan = LoadPlan {
        addr: connect_to(server.addr()),
        protocol: point.protocol,
        connections: point.connections,
        size: point.size,
        rate: point.rate,
        churn: point.mode == Mode::Churn,
        threads: setup.placement.client.map_or(1, |c| c.len()),
        pipeline: point.pipeline,
        warmup,
        duration,
    };
    let group = server.pid() as i32;
    let load = std::thread::scope(|scope| {
        // The stall, centred in the window that opens at `from`, on a thread of its own.
        let stall = point.stall;
        let stall_from = move |from: Instant| {
            if let Some(stall) = stall {
                let at = from + duration.saturating_sub(stall) / 2;
                scope.spawn(move || stop_for(group, at, stall));
            }
        };
        // Readings at the very edges of the window, whatever the regular interval has grown to.
        let window_edges = |start: Instant| {
            let (from, to) = (start + warmup, start + warmup + duration);
            sampler.sample_at(from);
            sampler.sample_at(to);
            if let Some(Ok(c)) = &counters {
                let reader = c.read_at(vec![from, to]);
                *readings.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader);
            }
            stall_from(from);
        };
        match &setup.via {
            None => client::run_load(
                &plan,
                setup.placement.client,
                &window_edges,
                setup.interrupted,
            )
            .map(|run| {
                let from = run.started + warmup;
                LoadDone {
                    started: run.started,
                    from,
                    to: from + Duration::from_secs_f64(run.result.duration_s.max(0.0)),
                    requests_in_window: run.result.requests as f64,
                    parts: None,
                    result: run.result,
                }
            }),
            // Through prefixes: the window's edges are when the load processes said so; the
            // stall is timed from the first of them to open.
            Some(via) => {
                let started = Instant::now();
                let opened = std::sync::atomic::AtomicBool::new(false);
                let mark = |at: Instant| {
                    sampler.sample_at(at);
                    if let Some(Ok(c)) = &counters
                        && let Ok(r) = c.read()
                    {
                        marked.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                    }
                    if !opened.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        stall_from(at);
                    }
                };
                client::run_via(&plan, via, setup.placement.client, &mark, setup.interrupted).map(
                    |run| LoadDone {
                        started,
                        from: run.from,
                        to: run.to,
                        requests_in_window: run.requests_in_window,
                        parts: Some(run.parts),
                        result: run.result,
                    },
                )
            }
        }
    });
    let series = sampler.finish();
    abort_all(held);
    if server.has_exited() {
        let status = server.stop()?;
        let log = server.log_tail();
        let said = log.lines().last().unwrap_or("");
        return Err(NotMeasured::Failed(format!(
            "the server exited during the run ({status}): {said}"
        )));
    }
    // Every thread and process of the server runs where it was placed, now that all of them
    // have started (a runtime's workers, a pool's children start after the listening line).
    if let Some(cpus) = layout::server_cpus(setup.placement.server, point.cpus) {
        placement::check_tree_affinity(server.pid() as i32, cpus)
            .map_err(|e| NotMeasured::Failed(format!("the server's placement: {e}")))?;
    }
    server.stop()?;
    // The meter's line is the server's last words: read once its stderr is closed.
    server.wait_log_closed(Duration::from_secs(1));
    let served = layout::served_per_worker(&server.log_tail());
    let load = load?;
    let (from, to) = (load.from, load.to);
    // A sampling error matters only if it leaves the window uncovered.
    let window = tree::window(&series.samples, from, to).ok_or_else(|| {
        if let Some(e) = &series.error {
            return NotMeasured::Failed(format!("sampling the server: {e}"));
        }
        let (first, last) = (series.samples.first(), series.samples.last());
        let since = |s: Option<&Sample>| s.map(|s| s.at.saturating_duration_since(load.started));
        NotMeasured::Failed(format!(
            "the samples ({}, {:?} to {:?} after the load started) do not cover its window ({:?} to {:?})",
            series.samples.len(),
            since(first),
            since(last),
            from.duration_since(load.started),
            to.duration_since(load.started)
        ))
    })?;
    if load.result.requests == 0 {
        let e = &load.result.errors;
        return Err(NotMeasured::Failed(format!(
            "no request completed in the window (refused {}, reset {}, timed out {}, mismatch {}, other {})",
            e.refused, e.reset, e.timed_out, e.mismatch, e.other
        )));
    }
    let marked = marked.into_inner().unwrap_or_else(|p| p.into_inner());
    let counted = counters.map(|c| {
        let c = c?;
        let Some(reader) = readings.into_inner().unwrap_or_else(|p| p.into_inner()) else {
            // Through --load-via: the readings taken at the marks nearest the window's edges.
            let nearest = |t: Instant| {
                marked.iter().min_by_key(|r| {
                    r.at.saturating_duration_since(t) + t.saturating_duration_since(r.at)
                })
            };
            return match (nearest(from), nearest(to)) {
                (Some(a), Some(b)) if b.at > a.at => Ok(c.between(a, b)),
                _ => Err("the counters were not read at both edges".to_string()),
            };
        };
        let r = reader
            .join()
            .map_err(|_| "the counter reader panicked".to_string())?
            .map_err(|e| format!("reading the counters: {e}"))?;
        match r.as_slice() {
            [from, to] => Ok(c.between(from, to)),
            _ => Err("the counters were not read at both edges".to_string()),
        }
    });
    let measured = Measured {
        load: load.result,
        window,
        peaks: tree::peaks(&series.samples),
        workers,
        served,
        requests_in_window: load.requests_in_window,
        parts: load.parts,
        load_threads: plan.threads.max(1),
    };
    Ok((measured, counted))
}

/// One run more of the point with the syscall counters attached: its syscalls per request,
/// or why they were not counted.
fn count_syscalls(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    plan: &CountPlan,
    announced: Option<usize>,
) -> Result<syscalls::PerRequest, String> {
    let mut announced = announced;
    let whole = Span::of(setup);
    let brief = match point.connections {
        n if n <= BRIEF_COUNTING_UP_TO => Span {
            warmup: setup.warmup.min(COUNTING_WARMUP),
            duration: setup.duration.min(COUNTING_WINDOW),
        },
        _ => whole,
    };
    let mut run = run_once(setup, model, point, &mut announced, Some((plan, brief)));
    // A brief run that failed — most often it caught no request, the connections still being
    // set up with the tracepoints slowing every syscall — is tried once with the whole window.
    if run.is_err() && brief != whole {
        run = run_once(setup, model, point, &mut announced, Some((plan, whole)));
    }
    match run {
        Ok((m, Some(Ok(w)))) => w
            .per_request(m.load.requests_per_sec)
            .ok_or_else(|| "syscalls: no requests in the counting run".to_string()),
        Ok((_, Some(Err(why)))) => Err(format!("syscalls not counted: {why}")),
        Ok((_, None)) => Err("syscalls not counted".to_string()),
        Err(NotMeasured::Unreachable(why) | NotMeasured::Failed(why)) => Err(format!(
            "syscalls not counted: the counting run failed: {why}"
        )),
    }
}

/// Puts what the counting run found on the row.
fn add_syscalls(row: &mut Row, counted: &Result<syscalls::PerRequest, String>) {
    match counted {
        Ok(p) => {
            row.syscalls_per_request = Some(p.total);
            row.syscalls = Some(p.by_name.clone());
            match &p.events_per_wait {
                Ok(e) => row.events_per_wait = Some(*e),
                // A model that never waits needs no word; anything else is said.
                Err(why) if why == syscalls::NO_WAITS => {}
                Err(why) => row.add_note(format!("events/wait unknown: {why}")),
            }
        }
        Err(why) => row.add_note(why.clone()),
    }
}

/// Stops the process group `group` (the server and everything it forked) with SIGSTOP at `at`
/// for `stall`, then lets it go on with SIGCONT: a server that freezes — a pause of the garbage
/// collector, a page-in, a host that took the CPU away — as wrk2's demonstration has it.
fn stop_for(group: i32, at: Instant, stall: Duration) {
    use nix::sys::signal::{Signal, killpg};
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let pgid = nix::unistd::Pid::from_raw(group);
    if killpg(pgid, Signal::SIGSTOP).is_ok() {
        std::thread::sleep(stall);
        // The group is ours and still unreaped (the caller stops it only after this thread
        // ends), so the id cannot name anyone else's processes.
        let _ = killpg(pgid, Signal::SIGCONT);
    }
}

/// Closes the held idle connections with an RST (SO_LINGER 0), so that the client side leaves
/// no TIME_WAIT behind to run the next point out of local ports.
fn abort_all(held: Vec<std::net::TcpStream>) {
    for stream in held {
        let linger = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger);
    }
}

/// Runs the point `setup.repeat` times, each on a fresh server, then once more to count its
/// syscalls where the kernel allows it, and reduces the runs to one row: the median of each
/// figure, errors summed over the runs.
pub fn measure(setup: &Setup, model: &dyn Model, point: &Point) -> Row {
    let mut runs = Runs::new(setup, model, point);
    for _ in 0..setup.repeat.max(1) {
        if !runs.run(setup, model, point) {
            break;
        }
    }
    runs.count_syscalls(setup, model, point);
    runs.row()
}

/// The runs of one point so far, to be reduced to its row; what lets a sweep repeat its
/// points in rounds (each point once per round) rather than each point several times in a row.
pub struct Runs {
    /// The row without figures: the point's name, and why it ended if it did.
    row: Row,
    measured: Vec<Measured>,
    ended: bool,
    /// What the syscall-counting run found, once it has run.
    counted: Option<Result<syscalls::PerRequest, String>>,
}

impl Runs {
    /// No run yet.
    pub fn new(setup: &Setup, model: &dyn Model, point: &Point) -> Runs {
        let mut row = point.row(model);
        row.server_cpus = layout::server_cpus(setup.placement.server, point.cpus).map(|c| c.list());
        row.load_cpus = setup.placement.client.map(|c| c.list());
        Runs {
            row,
            measured: Vec::new(),
            ended: false,
            counted: None,
        }
    }

    /// Runs the point once more, on a fresh server; says whether it may be run again (not
    /// unreachable, not failed, not interrupted). A failed run ends the point: its row then
    /// says why, whatever earlier runs measured.
    pub fn run(&mut self, setup: &Setup, model: &dyn Model, point: &Point) -> bool {
        if self.ended {
            return false;
        }
        let ended = |runs: &mut Runs, status: Status, why: String| {
            runs.row.status = status;
            runs.row.note = why;
            runs.ended = true;
            false
        };
        if (setup.interrupted)() {
            return ended(self, Status::Failed, "interrupted".into());
        }
        match measure_once(setup, model, point, &mut self.row.workers) {
            Ok(m) => {
                self.measured.push(m);
                true
            }
            Err(NotMeasured::Unreachable(why)) => ended(self, Status::Unreachable, why),
            Err(NotMeasured::Failed(why)) => ended(self, Status::Failed, why),
        }
    }

    /// Whether the point will not be run again.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The counting run, once the measured runs are over, where syscalls are counted and the
    /// point was measured at all.
    pub fn count_syscalls(&mut self, setup: &Setup, model: &dyn Model, point: &Point) {
        if let Counting::Ready(plan) = setup.syscalls
            && point.counts_syscalls()
            && self.row.status == Status::Ok
            && !self.measured.is_empty()
            && self.counted.is_none()
            && !(setup.interrupted)()
        {
            self.counted = Some(count_syscalls(setup, model, point, plan, self.row.workers));
        }
    }

    /// The row: the medians of the runs so far, or why there are none; each figure's range
    /// over the runs beside it, for `diff` to tell a change from noise.
    pub fn row(&self) -> Row {
        let mut row = self.row.clone();
        if row.status == Status::Ok {
            fill(&mut row, &self.measured);
            let per_run: Vec<Row> = self
                .measured
                .iter()
                .map(|m| {
                    let mut one = row.clone();
                    fill(&mut one, std::slice::from_ref(m));
                    one
                })
                .collect();
            row.spread = diff::spread(&per_run);
            if let Some(counted) = &self.counted {
                add_syscalls(&mut row, counted);
            }
        }
        row
    }
}

fn fill(row: &mut Row, runs: &[Measured]) {
    let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let per_request =
        |m: &Measured, d: Duration| d.as_secs_f64() * 1e6 / m.requests_in_window.max(1.0);
    row.runs = runs.len();
    row.workers = runs.first().map(|m| m.workers);
    row.served_per_worker = runs
        .iter()
        .fold(None, |t, m| layout::add_served(t, m.served.as_ref()));
    row.requests = Some(med(&|m| m.load.requests as f64).round() as u64);
    row.requests_per_sec = Some(med(&|m| m.load.requests_per_sec));
    let latency = |of: &dyn Fn(&Measured) -> Option<Latency>| -> Option<Latency> {
        let all: Vec<Latency> = runs.iter().filter_map(of).collect();
        if all.len() < runs.len() || all.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&Latency) -> f64| median(all.iter().map(f).collect());
        Some(Latency {
            p50: med(&|l| l.p50),
            p90: med(&|l| l.p90),
            p99: med(&|l| l.p99),
            p999: med(&|l| l.p999),
            max: med(&|l| l.max),
            mean: med(&|l| l.mean),
        })
    };
    row.latency_us = latency(&|m| Some(m.load.latency_us));
    row.latency_from_send_us = latency(&|m| m.load.latency_from_send_us);
    row.cpu_us_per_request = Some(med(&|m| per_request(m, m.window.cpu)));
    // The split only where every run knows it.
    if runs.iter().all(|m| m.window.user_share.is_some()) {
        let share = |m: &Measured| m.window.user_share.unwrap_or(0.0);
        row.cpu_user_us_per_request =
            Some(med(&|m| per_request(m, m.window.cpu.mul_f64(share(m)))));
        row.cpu_sys_us_per_request = Some(med(&|m| {
            per_request(m, m.window.cpu.mul_f64(1.0 - share(m)))
        }));
    }
    row.pss_peak_bytes = Some(med(&|m| m.peaks.pss as f64) as u64);
    row.rss_peak_bytes = Some(med(&|m| m.peaks.rss as f64) as u64);
    row.peak_tasks = Some(Tasks {
        threads: med(&|m| m.peaks.threads as f64) as u64,
        processes: med(&|m| m.peaks.processes as f64) as u64,
    });
    row.context_switches_per_request = Some(SwitchRates {
        voluntary: med(&|m| m.window.switches.voluntary as f64 / m.requests_in_window.max(1.0)),
        involuntary: med(&|m| m.window.switches.involuntary as f64 / m.requests_in_window.max(1.0)),
    });
    row.errors = runs.iter().fold(Errors::default(), |a, m| {
        let e = &m.load.errors;
        Errors {
            refused: a.refused + e.refused,
            reset: a.reset + e.reset,
            timed_out: a.timed_out + e.timed_out,
            mismatch: a.mismatch + e.mismatch,
            other: a.other + e.other,
        }
    });
    let client = med(&|m| m.load.client_cpu_percent);
    row.client_cpu_percent = Some(client);
    // Each load thread has a core of its own: the load is bound past 90% of every one of them.
    let per_thread = med(&|m| m.load.client_cpu_percent / m.load_threads as f64);
    row.client_bound = per_thread > row::CLIENT_BOUND_PERCENT;
    row.load_parts = runs.first().and_then(|m| m.parts.clone());
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Medians of odd and even counts; nothing gives zero rather than a panic.
    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    /// The worker count is read from the listening line the `serve` command prints.
    #[test]
    fn workers_from_the_listening_line() {
        let line = "server-models[7]: prefork listening on 127.0.0.1:5 (protocol echo, workers 12)";
        assert_eq!(announced_workers(line), Some(12));
        assert_eq!(
            announced_workers("server-models[7]: x listening on 127.0.0.1:5"),
            None
        );
    }
}
