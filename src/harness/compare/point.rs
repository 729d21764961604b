//! One model at one point under load: a fresh server, the load generator against it, the
//! server's tree sampled throughout; repeated and reduced to medians. Then, where the kernel
//! allows it, one run more with the syscall counters attached ([`syscalls`]): the tracepoints
//! slow every syscall down, so they are never on in the runs whose CPU and latency are reported.

use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, LoadPlan};
use super::{Point, Setup, unreachable};
use crate::harness::load::LoadReport;
use crate::harness::measure::syscalls::{self, CountPlan, Counting, Window};
use crate::harness::measure::tree::{self, Peaks, Sample, TreeUsage};
use crate::harness::measure::{Sampler, placement};
use crate::harness::report::row::{self, Errors, Latency, Mode, Row, Status, SwitchRates, Tasks};
use crate::harness::spawn::{ServerProcess, serve_command};
use crate::server::model::{Concurrency, Model};

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

/// A fresh server for `model`, pinned to the server CPU, and its number of workers. `announced` learns the number of
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
    let workers = setup
        .workers
        .or((model.concurrency() == Concurrency::Workers).then_some(setup.pool_workers));
    let workers_arg = workers.map(|w| w.to_string());
    let mut extra: Vec<&str> = match &workers_arg {
        Some(w) => vec!["--workers", w],
        None => vec![],
    };
    if let Some(lock) = point.accept_lock {
        extra.extend(["--accept-lock", lock.name()]);
    }
    let mut command = serve_command(
        &std::env::current_exe()?,
        model.name(),
        point.protocol,
        &extra,
    );
    if let Some(cpu) = setup.placement.server {
        placement::pin_command(&mut command, cpu)?;
    }
    prepare(&mut command)?;
    let server = ServerProcess::start_command(command)?;
    // The listening line says `workers N`; a server that does not say it runs the default,
    // which for a server pinned to one CPU is one.
    let said = server
        .log_tail()
        .lines()
        .find(|l| l.contains("listening on "))
        .and_then(announced_workers);
    let default = if setup.placement.server.is_some() {
        1
    } else {
        crate::server::model::Config::default().workers
    };
    let workers = said.or(workers).unwrap_or(default);
    *announced = Some(workers);
    if let Some(why) = unreachable(
        model,
        point.mode,
        point.connections,
        workers,
        setup.fd_limit,
    ) {
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

/// Runs the point once; with `counting`, the server gets the syscall counters and the second
/// result is what they counted over the window (or why nothing was).
fn run_once(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
    counting: Option<&CountPlan>,
) -> Result<(Measured, Option<Result<Window, String>>), NotMeasured> {
    let mut handoff = None;
    let (mut server, workers) =
        start_server_with(setup, model, point, announced, &mut |command| {
            if let Some(plan) = counting {
                handoff = Some(plan.attach(command)?);
            }
            Ok(())
        })?;
    let counters = handoff.map(|h| h.receive().map(Arc::new));
    let readings = Mutex::new(None);
    let sampler = Sampler::start(server.pid() as i32, SAMPLE_EVERY)?;
    let plan = LoadPlan {
        addr: server.addr(),
        protocol: point.protocol,
        connections: point.connections,
        size: point.size,
        rate: point.rate,
        churn: point.mode == Mode::Churn,
        warmup: setup.warmup,
        duration: setup.duration,
    };
    // Readings at the very edges of the window, whatever the regular interval has grown to.
    let window_edges = |start: Instant| {
        let (from, to) = (start + setup.warmup, start + setup.warmup + setup.duration);
        sampler.sample_at(from);
        sampler.sample_at(to);
        if let Some(Ok(c)) = &counters {
            let reader = c.read_at(vec![from, to]);
            *readings.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader);
        }
    };
    let load = client::run_load(
        &plan,
        setup.placement.client,
        &window_edges,
        setup.interrupted,
    );
    let series = sampler.finish();
    if server.has_exited() {
        let status = server.stop()?;
        let log = server.log_tail();
        let said = log.lines().last().unwrap_or("");
        return Err(NotMeasured::Failed(format!(
            "the server exited during the run ({status}): {said}"
        )));
    }
    server.stop()?;
    let load = load?;
    let from = load.started + setup.warmup;
    let to = from + Duration::from_secs_f64(load.result.duration_s.max(0.0));
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
    let counted = counters.map(|c| {
        let c = c?;
        let reader = readings
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or("the window's readings were never asked for")?;
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
    };
    Ok((measured, counted))
}

/// The counting run: the point once more, with the syscall counters attached; fills the row's
/// syscall figures, or notes why there are none.
fn count_syscalls(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    plan: &CountPlan,
    row: &mut Row,
) {
    let mut announced = row.workers;
    let counted = match run_once(setup, model, point, &mut announced, Some(plan)) {
        Ok((m, Some(Ok(w)))) => w
            .per_request(m.load.requests_per_sec)
            .ok_or_else(|| "syscalls: no requests in the counting run".to_string()),
        Ok((_, Some(Err(why)))) => Err(format!("syscalls not counted: {why}")),
        Ok((_, None)) => Err("syscalls not counted".to_string()),
        Err(NotMeasured::Unreachable(why) | NotMeasured::Failed(why)) => Err(format!(
            "syscalls not counted: the counting run failed: {why}"
        )),
    };
    match counted {
        Ok(p) => {
            row.syscalls_per_request = Some(p.total);
            row.syscalls = Some(p.by_name);
            match p.events_per_wait {
                Ok(e) => row.events_per_wait = Some(e),
                // A model that never waits needs no word; anything else is said.
                Err(why) if why == syscalls::NO_WAITS => {}
                Err(why) => row.add_note(format!("events/wait unknown: {why}")),
            }
        }
        Err(why) => row.add_note(why),
    }
}

/// Runs the point `setup.repeat` times, each on a fresh server, and reduces the runs to one row:
/// the median of each figure, errors summed over the runs.
pub fn measure(setup: &Setup, model: &dyn Model, point: &Point) -> Row {
    let mut row = point.row(model);
    let mut runs = Vec::new();
    for _ in 0..setup.repeat.max(1) {
        if (setup.interrupted)() {
            return row.with_status(Status::Failed, "interrupted");
        }
        match measure_once(setup, model, point, &mut row.workers) {
            Ok(m) => runs.push(m),
            Err(NotMeasured::Unreachable(why)) => return row.with_status(Status::Unreachable, why),
            Err(NotMeasured::Failed(why)) => return row.with_status(Status::Failed, why),
        }
    }
    fill(&mut row, &runs);
    if let Counting::Ready(plan) = setup.syscalls
        && !(setup.interrupted)()
    {
        count_syscalls(setup, model, point, plan, &mut row);
    }
    row
}

fn fill(row: &mut Row, runs: &[Measured]) {
    let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let per_request =
        |m: &Measured, d: Duration| d.as_secs_f64() * 1e6 / m.load.requests.max(1) as f64;
    row.runs = runs.len();
    row.workers = runs.first().map(|m| m.workers);
    row.requests = Some(med(&|m| m.load.requests as f64).round() as u64);
    row.requests_per_sec = Some(med(&|m| m.load.requests_per_sec));
    row.latency_us = Some(Latency {
        p50: med(&|m| m.load.latency_us.p50),
        p90: med(&|m| m.load.latency_us.p90),
        p99: med(&|m| m.load.latency_us.p99),
        p999: med(&|m| m.load.latency_us.p999),
        max: med(&|m| m.load.latency_us.max),
        mean: med(&|m| m.load.latency_us.mean),
    });
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
        voluntary: med(&|m| m.window.switches.voluntary as f64 / m.load.requests.max(1) as f64),
        involuntary: med(&|m| m.window.switches.involuntary as f64 / m.load.requests.max(1) as f64),
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
    row.client_bound = client > row::CLIENT_BOUND_PERCENT;
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
