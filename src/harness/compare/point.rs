//! One model at one point under load: a fresh server, the load generator against it, the
//! server's tree sampled throughout; repeated and reduced to medians.
//!
//! Two experiments add to the run: idle connections held open beside the loaded ones before
//! the load starts (busy beside idle), and the server's process group stopped for a moment in
//! the middle of the window (the coordinated-omission demonstration).

use std::io;
use std::time::{Duration, Instant};

use super::client::{self, LoadPlan};
use super::{Point, Setup, unreachable};
use crate::harness::load::LoadReport;
use crate::harness::measure::tree::{self, Peaks, Sample, TreeUsage};
use crate::harness::measure::{Sampler, placement};
use crate::harness::report::row::{
    self, Errors, Latency, Mode, Row, Spread, Status, SwitchRates, Tasks,
};
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
}

/// Runs the point once on a fresh server; `announced` learns the server's worker count even when
/// the point turns out unreachable.
fn measure_once(
    setup: &Setup,
    model: &dyn Model,
    point: &Point,
    announced: &mut Option<usize>,
) -> Result<Measured, NotMeasured> {
    let (mut server, workers) = start_server(setup, model, point, announced)?;
    let sampler = Sampler::start(server.pid() as i32, SAMPLE_EVERY)?;
    // Busy beside idle: the idle connections first, each after one round trip, held (by this
    // process, where they cost the server nothing but their being watched) until the end.
    let held = match point.idle_beside {
        0 => Vec::new(),
        k => super::idle::hold(server.addr(), point.protocol, point.size, k, setup)?,
    };
    let plan = LoadPlan {
        addr: server.addr(),
        protocol: point.protocol,
        connections: point.connections,
        size: point.size,
        rate: point.rate,
        churn: point.mode == Mode::Churn,
        pipeline: point.pipeline,
        warmup: setup.warmup,
        duration: setup.duration,
    };
    let group = server.pid() as i32;
    let load = std::thread::scope(|scope| {
        // Readings at the very edges of the window, whatever the regular interval has grown to;
        // and the stall, centred in the window, on a thread of its own.
        let window_edges = |start: Instant| {
            sampler.sample_at(start + setup.warmup);
            sampler.sample_at(start + setup.warmup + setup.duration);
            if let Some(stall) = point.stall {
                let at = start + setup.warmup + (setup.duration.saturating_sub(stall)) / 2;
                scope.spawn(move || stop_for(group, at, stall));
            }
        };
        client::run_load(
            &plan,
            setup.placement.client,
            &window_edges,
            setup.interrupted,
        )
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
    Ok(Measured {
        load: load.result,
        window,
        peaks: tree::peaks(&series.samples),
        workers,
    })
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

/// Runs the point `setup.repeat` times, each on a fresh server, and reduces the runs to one row:
/// the median of each figure, errors summed over the runs.
pub fn measure(setup: &Setup, model: &dyn Model, point: &Point) -> Row {
    let mut runs = Runs::new(model, point);
    for _ in 0..setup.repeat.max(1) {
        if !runs.run(setup, model, point) {
            break;
        }
    }
    runs.row()
}

/// The runs of one point so far, to be reduced to its row; what lets a sweep repeat its
/// points in rounds (each point once per round) rather than each point several times in a row.
pub struct Runs {
    /// The row without figures: the point's name, and why it ended if it did.
    row: Row,
    measured: Vec<Measured>,
    ended: bool,
}

impl Runs {
    /// No run yet.
    pub fn new(model: &dyn Model, point: &Point) -> Runs {
        Runs {
            row: point.row(model),
            measured: Vec::new(),
            ended: false,
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

    /// The row: the medians of the runs so far, or why there are none.
    pub fn row(&self) -> Row {
        let mut row = self.row.clone();
        if row.status == Status::Ok {
            fill(&mut row, &self.measured);
        }
        row
    }
}

fn fill(row: &mut Row, runs: &[Measured]) {
    let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let per_request =
        |m: &Measured, d: Duration| d.as_secs_f64() * 1e6 / m.load.requests.max(1) as f64;
    row.runs = runs.len();
    row.workers = runs.first().map(|m| m.workers);
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
    if runs.len() > 1 {
        let range = |f: &dyn Fn(&Measured) -> f64| {
            let v: Vec<f64> = runs.iter().map(f).collect();
            [
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ]
        };
        row.spread = Some(Spread {
            cpu_us_per_request: range(&|m| per_request(m, m.window.cpu)),
            requests_per_sec: range(&|m| m.load.requests_per_sec),
            p99: range(&|m| m.load.latency_us.p99),
        });
    }
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
