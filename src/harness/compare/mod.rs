//! `compare`: every model through the same sweep, measured the same way, into one table.
//!
//! For each model and each point of the sweep, a fresh `serve` process is started pinned to one
//! CPU, the load generator is started pinned to another, the server's process tree is sampled
//! from /proc through the run, and the figures of the load generator's measured window are set
//! beside the server's CPU, memory, tasks and context switches over the same window. A point a
//! model cannot serve by design is not run; its row says why. Every run has a time bound.
//!
//! - [`client`]: the load generator as a child process.
//! - [`point`]: one model at one point under load, repeated, reduced to medians.
//! - [`idle`]: memory per idle connection, and holding idle connections open for [`beside`].
//! - [`beside`]: busy beside idle — a few busy connections beside K idle ones, each figure
//!   against the same model with none.
//! - [`rates`]: latency against offered load — open loop at given rates or at rates searched
//!   for (doubling, then bisecting), each model's knee, and the coordinated-omission run.
//! - [`layout`]: CPU layouts: the server's CPUs for each point, swept over a count.
//! - [`classic`]: the `classic` preset, Stevens' UNP ch. 30 table: process-control CPU per
//!   connection, each design less the iterative server.
//! - [`cli`]: the command line.

pub mod beside;
pub mod classic;
pub mod cli;
pub mod client;
pub mod idle;
pub mod layout;
pub mod point;
pub mod rates;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::measure::placement::{self, Cpus, Placement};
use crate::harness::measure::syscalls::Counting;
use crate::harness::report::Settings;
use crate::harness::report::row::{Mode, Row, Status};
use crate::server::accept_lock::AcceptLock;
use crate::server::model::{Concurrency, Config, Model};
use crate::server::protocol::Protocol;

/// Descriptors a server holds besides its connections: stdin, stdout, stderr, the listener,
/// the shutdown eventfd, an epoll or io_uring instance, and a few to spare.
pub const FD_RESERVE: usize = 10;

/// What to run.
#[derive(Clone)]
pub struct Options {
    /// The models, in the order their rows appear.
    pub models: Vec<&'static dyn Model>,
    /// The protocols to run each point with.
    pub protocols: Vec<Protocol>,
    /// Connection counts of the closed-loop (or open-loop) sweep.
    pub connections: Vec<usize>,
    /// Echo message sizes.
    pub sizes: Vec<usize>,
    /// Open loop at this many requests per second, instead of closed loop.
    pub rate: Option<f64>,
    /// Connection slots of the churn sweep (connect, one request, close); empty for none.
    pub churn: Vec<usize>,
    /// Idle connection counts for memory per connection; empty for none.
    pub idle: Vec<usize>,
    /// Busy beside idle: the idle connections to hold beside the busy ones, one point per
    /// count (0 included, the baseline); empty for none.
    pub idle_beside: Vec<usize>,
    /// Busy beside idle: the busy connection counts.
    pub beside_connections: Vec<usize>,
    /// Busy beside idle: a model that held a thread or a process per idle connection at one K
    /// is not run at the larger ones (its rows say so). The default sweep's way of staying
    /// within its time: 5000 threads or processes take ten seconds to start and reap, and the
    /// cost of one per connection is plain at 1000 already.
    pub beside_thrifty: bool,
    /// Requests in flight per connection for the closed-loop points, one point per depth.
    pub pipeline: Vec<usize>,
    /// Latency against offered load: the rates to offer, or a search for each model's knee.
    pub rates: Option<rates::Rates>,
    /// Latency against offered load: the connections the rates are spread over.
    pub rate_connections: Vec<usize>,
    /// The p99 a model must stay under for a rate to count towards its knee.
    pub slo_p99: Duration,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Each measured window.
    pub duration: Duration,
    /// Runs per point; the row holds the medians.
    pub repeat: usize,
    /// `--workers` for every server; `None` leaves each model its default.
    pub workers: Option<usize>,
    /// The pool models' workers when `workers` is `None`.
    pub pool_workers: usize,
    /// The accept locks to run each model that takes one with (prefork); more than one, or
    /// another than `none`, and its rows carry the lock's name.
    pub accept_locks: Vec<AcceptLock>,
    /// The preset the run was asked for, if any (`classic`).
    pub preset: Option<String>,
    /// Where the report goes.
    pub out: PathBuf,
    /// Pin the server and the client to CPUs of their own (when there are two).
    pub pin: bool,
    /// The server's CPUs (`--server-cpus`); `None`: the first allowed CPU, or the CPUs the
    /// load does not take.
    pub server_cpus: Option<Cpus>,
    /// The load generator's CPUs (`--load-cpus`), one load thread each; `None`: the next
    /// allowed CPU, or the CPUs the server does not take.
    pub load_cpus: Option<Cpus>,
    /// Server CPU counts to sweep (`--server-cores`) for the models that use more than one;
    /// empty: every server CPU at once.
    pub server_cores: Vec<usize>,
    /// Where each server listens: 127.0.0.1, or every interface for a load on other hosts.
    pub listen: IpAddr,
    /// The load run through prefixes on other hosts (`--load-via`), if asked for.
    pub via: Option<client::Via>,
    /// Count the syscalls of each point that [`Point::counts_syscalls`], in a run of its own.
    pub syscalls: bool,
}

/// One point of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// What the connections speak.
    pub protocol: Protocol,
    /// Closed, open, churn or idle.
    pub mode: Mode,
    /// Connections (churn: slots; idle: connections held; beside idle: the busy ones).
    pub connections: usize,
    /// Echo message size; 0 for HTTP, whose request is always `GET /`.
    pub size: usize,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// The accept lock to serve with, for a model that takes one when the run names locks.
    pub accept_lock: Option<AcceptLock>,
    /// How many of the server's CPUs to pin it to (the lowest ones), in a sweep of the server's
    /// CPU count; `None`: all of them.
    pub cpus: Option<usize>,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    /// Busy beside idle: this many idle connections are held open beside the loaded ones.
    pub idle_beside: usize,
    /// A point of the offered-load sweep (its rate is `rate`).
    pub offered: bool,
    /// A stand-in for `--rates auto`: the run searches the rates for this model's knee.
    pub search: bool,
    /// The server is stopped (SIGSTOP) this long in the middle of the window.
    pub stall: Option<Duration>,
}

impl Point {
    /// A point with nothing beyond its mode: one request in flight, no idle connection beside,
    /// no rate.
    pub fn new(protocol: Protocol, mode: Mode, connections: usize, size: usize) -> Point {
        Point {
            protocol,
            mode,
            connections,
            size,
            rate: None,
            accept_lock: None,
            cpus: None,
            pipeline: 1,
            idle_beside: 0,
            offered: false,
            search: false,
            stall: None,
        }
    }

    /// Whether the point gets a syscall-counting run: the connection sweep (closed or open
    /// loop at `--rate`) and churn. The experiments' points — busy beside K > 0 idle, the
    /// offered-load sweep, the stall — are about CPU and latency, and would double their time.
    pub fn counts_syscalls(&self) -> bool {
        matches!(self.mode, Mode::Closed | Mode::Open | Mode::Churn)
            && self.idle_beside == 0
            && !self.offered
            && !self.search
            && self.stall.is_none()
    }

    /// An empty row for `model` at this point, named as the tables name it.
    pub fn row(&self, model: &dyn Model) -> Row {
        let mut row = Row::new(
            model.name(),
            self.protocol.name(),
            self.mode,
            self.connections,
            self.size,
        );
        row.rate = self.rate;
        row.accept_lock = self.accept_lock.map(|l| l.name().to_string());
        row.pipeline = self.pipeline;
        // Every loaded row has K idle connections beside it, most of them none; the idle rows'
        // connections are the idle ones.
        row.idle_beside = (self.mode != Mode::Idle).then_some(self.idle_beside);
        row.offered_rate = self.rate.filter(|_| self.offered);
        row.server_stopped_ms = self.stall.map(|d| d.as_secs_f64() * 1e3);
        row
    }

    /// Every connection the server holds at this point: the loaded ones and any idle ones
    /// beside them.
    pub fn held(&self) -> usize {
        self.connections + self.idle_beside
    }
}

/// What every point is run with.
pub struct Setup<'a> {
    /// Where the server and the client run.
    pub placement: Placement,
    /// `--workers` for every server.
    pub workers: Option<usize>,
    /// The pool models' workers when `workers` is `None`.
    pub pool_workers: usize,
    /// Warm-up before each window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Runs per point.
    pub repeat: usize,
    /// The descriptor limit of the harness and its children.
    pub fd_limit: u64,
    /// Whether the user has asked to stop (SIGINT).
    pub interrupted: &'a dyn Fn() -> bool,
    /// Where each server listens (its port is its own).
    pub listen: IpAddr,
    /// The load through prefixes on other hosts, if asked for.
    pub via: Option<client::Via>,
    /// Whether syscalls are counted, and with what.
    pub syscalls: &'a Counting,
}

/// What a whole run produced.
pub struct SweepOutcome {
    /// One row per model and point, in plan order.
    pub rows: Vec<Row>,
    /// The settings used.
    pub settings: Settings,
    /// How long the whole run took.
    pub wall: Duration,
    /// The run was interrupted before the end of the plan.
    pub interrupted: bool,
}

/// Every (model, point) pair of the sweep, in the order they run: model by model, so that the
/// progress bar reads as a walk through the models.
pub fn plan(opts: &Options) -> Vec<(&'static dyn Model, Point)> {
    let first_size = opts.sizes.first().copied().unwrap_or(64);
    let mut points = Vec::new();
    for &protocol in &opts.protocols {
        // HTTP sends `GET /` whatever the size: one point per connection count, size 0 for
        // "not applicable".
        let sizes = if protocol == Protocol::Http {
            vec![0]
        } else {
            opts.sizes.clone()
        };
        let depths = |mode: Mode| match mode {
            Mode::Closed => opts.pipeline.clone(),
            _ => vec![1],
        };
        let mode = if opts.rate.is_some() {
            Mode::Open
        } else {
            Mode::Closed
        };
        for &size in &sizes {
            for pipeline in depths(mode) {
                for &connections in &opts.connections {
                    points.push(Point {
                        rate: opts.rate,
                        pipeline,
                        ..Point::new(protocol, mode, connections, size)
                    });
                }
            }
        }
        for &size in &sizes {
            for pipeline in depths(mode) {
                for &connections in &opts.beside_connections {
                    for &k in &opts.idle_beside {
                        let point = Point {
                            rate: opts.rate,
                            pipeline,
                            idle_beside: k,
                            ..Point::new(protocol, mode, connections, size)
                        };
                        // K = 0 is a plain point: when the connection sweep has it, its row is
                        // the baseline, and it is not run twice.
                        if !points.contains(&point) {
                            points.push(point);
                        }
                    }
                }
            }
        }
        if let Some(rates) = &opts.rates {
            // With --idle-beside too, each rate series runs beside each K.
            let ks = if opts.idle_beside.is_empty() {
                vec![0]
            } else {
                opts.idle_beside.clone()
            };
            for (&size, &connections, &k) in sizes
                .iter()
                .flat_map(|s| opts.rate_connections.iter().map(move |c| (s, c)))
                .flat_map(|(s, c)| ks.iter().map(move |k| (s, c, k)))
            {
                {
                    let open = Point {
                        offered: true,
                        idle_beside: k,
                        ..Point::new(protocol, Mode::Open, connections, size)
                    };
                    match rates {
                        rates::Rates::Auto => points.push(Point {
                            search: true,
                            ..open
                        }),
                        rates::Rates::List(list) => points.extend(list.iter().map(|&r| Point {
                            rate: Some(r),
                            ..open
                        })),
                    }
                }
            }
        }
        let size = if protocol == Protocol::Http {
            0
        } else {
            first_size
        };
        for &connections in &opts.churn {
            points.push(Point::new(protocol, Mode::Churn, connections, size));
        }
        for &connections in &opts.idle {
            points.push(Point::new(protocol, Mode::Idle, connections, size));
        }
    }
    // A model that takes an accept lock runs once per lock, unless the run asked for the
    // default alone: then its rows read as before, without a lock's name.
    let named_locks = opts.accept_locks.iter().any(|&l| l != AcceptLock::None);
    let locks_of = |m: &dyn Model| -> Vec<Option<AcceptLock>> {
        if m.takes_accept_lock() && named_locks {
            opts.accept_locks.iter().map(|&l| Some(l)).collect()
        } else {
            vec![None]
        }
    };
    let mut plan = Vec::new();
    for &model in &opts.models {
        for lock in locks_of(model) {
            for p in &points {
                for cpus in layout::cpu_counts(model, p.mode, &opts.server_cores) {
                    plan.push((
                        model,
                        Point {
                            accept_lock: lock,
                            cpus,
                            ..*p
                        },
                    ));
                }
            }
        }
    }
    plan
}

/// Why `model` cannot serve `connections` clients at once in `mode`, if it cannot.
///
/// Churn is never refused for the model's concurrency: its connections are short, so clients
/// past the limit wait their turn in the accept queue and are served.
pub fn unreachable(
    model: &dyn Model,
    mode: Mode,
    connections: usize,
    workers: usize,
    fd_limit: u64,
) -> Option<String> {
    if mode != Mode::Churn {
        let config = Config {
            workers,
            ..Config::default()
        };
        match (model.concurrency(), model.concurrency().limit(&config)) {
            (Concurrency::One, _) if connections > 1 => {
                return Some(format!(
                    "serves one client at a time: {} of {connections} clients would wait in the accept queue for good",
                    connections - 1
                ));
            }
            (Concurrency::Workers, Some(limit)) if connections > limit => {
                return Some(format!(
                    "{limit} workers serve {limit} clients at a time: {} of {connections} would wait unanswered \
                     (--workers {connections} lifts it)",
                    connections - limit
                ));
            }
            _ => {}
        }
    }
    if let Some(limit) = model.fd_limit()
        && connections + FD_RESERVE > limit
    {
        return Some(format!(
            "watches only descriptors below {limit} (FD_SETSIZE); {connections} connections need descriptors past it"
        ));
    }
    if (connections + FD_RESERVE) as u64 > fd_limit {
        return Some(format!(
            "the descriptor limit ({fd_limit}, ulimit -n) is below {connections} connections"
        ));
    }
    None
}

/// Chooses where the server and the client run and moves the calling thread beside the
/// client: the harness's sampling and reading of /proc must not take CPU from the server. Call
/// it before starting any thread (a progress bar's), so that every thread of the harness
/// inherits the place.
pub fn place(opts: &Options) -> io::Result<Placement> {
    let placement = if opts.server_cpus.is_some() || opts.load_cpus.is_some() {
        Placement::layout(opts.server_cpus, opts.load_cpus)?
    } else if opts.pin {
        Placement::choose()?
    } else {
        Placement {
            server: None,
            client: None,
        }
    };
    if let Some(cpus) = placement.client {
        placement::pin_current_thread(cpus)?;
    }
    layout::check_cores(&opts.server_cores, placement.server)?;
    Ok(placement)
}

/// Runs the whole sweep from where [`place`] put it, calling `progress` before each point
/// (with its model and point) and after each (with its row).
pub fn run(
    opts: &Options,
    placement: Placement,
    interrupted: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(SweepEvent),
) -> io::Result<SweepOutcome> {
    let began = Instant::now();
    let fd_limit = placement::raise_fd_limit()?;
    let counting = if opts.syscalls {
        Counting::standard()
    } else {
        Counting::Off
    };
    let setup = Setup {
        placement,
        workers: opts.workers,
        pool_workers: opts.pool_workers,
        warmup: opts.warmup,
        duration: opts.duration,
        repeat: opts.repeat.max(1),
        fd_limit,
        interrupted,
        listen: opts.listen,
        via: opts.via.clone(),
        syscalls: &counting,
    };
    let plan = plan(opts);
    // With --repeat, the plan runs in rounds, every point once per round: on a shared machine a
    // burst of someone else's work then falls on runs of different points, where run after run
    // of one point would put it on every run of that point, median included.
    let rounds = setup.repeat;
    let total = plan.len() * rounds;
    let mut slots: Vec<Option<Slot>> = (0..plan.len()).map(|_| None).collect();
    let mut stopped = false;
    'rounds: for round in 0..rounds {
        for (i, (model, point)) in plan.iter().enumerate() {
            if interrupted() {
                stopped = true;
                break 'rounds;
            }
            let live = match &slots[i] {
                None => true,
                Some(Slot::Measuring(runs)) => !runs.ended(),
                Some(Slot::Done(_)) => false,
            };
            if !live {
                continue;
            }
            let index = round * plan.len() + i;
            progress(SweepEvent::Starting {
                index,
                total,
                model: model.name(),
                point,
            });
            if slots[i].is_none() {
                let once = if point.search {
                    // The rates are chosen as the search goes; each rate tried is a row, and
                    // each rate is repeated in place.
                    Some(rates::search(
                        &setup,
                        *model,
                        point,
                        opts.slo_p99,
                        &mut |p| {
                            progress(SweepEvent::Starting {
                                index,
                                total,
                                model: model.name(),
                                point: p,
                            })
                        },
                    ))
                } else if let Some(why) =
                    beside::holds_a_task_per_connection(&rows_so_far(&slots), *model, point)
                        .filter(|_| opts.beside_thrifty)
                {
                    Some(vec![point.row(*model).with_status(Status::Skipped, why)])
                } else if point.mode == Mode::Idle {
                    Some(vec![idle::measure(&setup, *model, point)])
                } else {
                    None
                };
                match once {
                    Some(found) => {
                        if let Some(row) = found.last() {
                            progress(SweepEvent::Done { row });
                        }
                        slots[i] = Some(Slot::Done(found));
                        continue;
                    }
                    None => {
                        slots[i] = Some(Slot::Measuring(Box::new(point::Runs::new(
                            &setup, *model, point,
                        ))))
                    }
                }
            }
            if let Some(Slot::Measuring(runs)) = &mut slots[i] {
                runs.run(&setup, *model, point);
                progress(SweepEvent::Done { row: &runs.row() });
            }
        }
    }
    // The syscall-counting runs last, one per measured point: the tracepoints slow every
    // syscall, so they are on in none of the runs above. Held registered meanwhile, they are
    // not unregistered (and waited for) after each run. Without the hold each run still counts,
    // only slower.
    let _registered = match &counting {
        Counting::Ready(plan) if !stopped => plan.hold().ok(),
        _ => None,
    };
    for (slot, (model, point)) in slots.iter_mut().zip(&plan) {
        if let Some(Slot::Measuring(runs)) = slot {
            runs.count_syscalls(&setup, *model, point);
        }
    }
    let mut rows = rows_so_far(&slots);
    rates::mark_knees(&mut rows, opts.slo_p99);
    // Coordinated omission, shown once: the first model with a knee, at half of it, with its
    // server stopped for a moment in the middle of the window.
    if opts.rates.is_some()
        && !stopped
        && !interrupted()
        && let Some((model, point)) = rates::stall_point(&rows, &opts.models)
    {
        progress(SweepEvent::Starting {
            index: total,
            total,
            model: model.name(),
            point: &point,
        });
        let row = point::measure(&setup, model, &point);
        progress(SweepEvent::Done { row: &row });
        rows.push(row);
    }
    attach_idle_memory(&mut rows);
    classic::attach_process_control(&mut rows);
    beside::attach_ratios(&mut rows);
    Ok(SweepOutcome {
        rows,
        settings: Settings {
            models: opts.models.iter().map(|m| m.name().to_string()).collect(),
            protocols: opts
                .protocols
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            connections: opts.connections.clone(),
            sizes: opts.sizes.clone(),
            rate: opts.rate,
            churn: opts.churn.clone(),
            idle: opts.idle.clone(),
            idle_beside: opts.idle_beside.clone(),
            beside_connections: opts.beside_connections.clone(),
            pipeline: opts.pipeline.clone(),
            rates: opts.rates.as_ref().map(|r| r.to_string()),
            rate_connections: opts.rate_connections.clone(),
            slo_p99_us: opts.slo_p99.as_secs_f64() * 1e6,
            warmup_s: opts.warmup.as_secs_f64(),
            duration_s: opts.duration.as_secs_f64(),
            repeat: setup.repeat,
            workers: opts.workers,
            pool_workers: opts.pool_workers,
            accept_locks: opts
                .accept_locks
                .iter()
                .map(|l| l.name().to_string())
                .collect(),
            preset: opts.preset.clone(),
            server_cpu: placement.server.and_then(|c| c.list().first().copied()),
            client_cpu: placement.client.and_then(|c| c.list().first().copied()),
            server_cpus: placement.server.map(|c| c.list()),
            load_cpus: placement.client.map(|c| c.list()),
            server_cores: opts.server_cores.clone(),
            listen: opts.listen.to_string(),
            load_via: opts
                .via
                .as_ref()
                .map(|v| v.prefixes.clone())
                .unwrap_or_default(),
            addr: opts.via.as_ref().map(|v| v.addr.to_string()),
            baseline: None,
            syscalls: match &counting {
                Counting::Off => "not asked for (--no-syscalls)".into(),
                Counting::Unavailable(why) => format!("not counted: {why}"),
                Counting::Ready(plan) => format!(
                    "counted in a run of their own at each point of the connection sweep and churn, {} inherited tracepoint counters",
                    plan.counters()
                ),
            },
        },
        wall: began.elapsed(),
        interrupted: stopped,
    })
}

/// One point of the plan as the rounds go: being measured, or done (a search's rows, an idle
/// reading, a skipped point).
enum Slot {
    Measuring(Box<point::Runs>),
    Done(Vec<Row>),
}

/// The rows of the points reached so far, in plan order: medians of the runs so far.
fn rows_so_far(slots: &[Option<Slot>]) -> Vec<Row> {
    slots
        .iter()
        .flatten()
        .flat_map(|s| match s {
            Slot::Measuring(runs) => vec![runs.row()],
            Slot::Done(rows) => rows.clone(),
        })
        .collect()
}

/// Where the run is, for a progress display.
pub enum SweepEvent<'a> {
    /// A point is about to run.
    Starting {
        /// Its place in the plan (counting every round of `--repeat`), from 0.
        index: usize,
        /// Points in the plan, times the rounds.
        total: usize,
        /// The model.
        model: &'a str,
        /// The point.
        point: &'a Point,
    },
    /// A run of a point is done (with `--repeat`, once per round: the row holds the medians
    /// so far).
    Done {
        /// Its row.
        row: &'a Row,
    },
}

/// Gives each loaded row the memory per idle connection measured for the same model, protocol
/// and connection count, so that the row reads whole.
fn attach_idle_memory(rows: &mut [Row]) {
    let idle: Vec<(String, String, usize, f64)> = rows
        .iter()
        .filter(|r| r.mode == Mode::Idle && r.status == Status::Ok)
        .filter_map(|r| {
            Some((
                r.label(),
                r.protocol.clone(),
                r.connections,
                r.bytes_per_connection?,
            ))
        })
        .collect();
    for row in rows
        .iter_mut()
        .filter(|r| r.mode != Mode::Idle && r.status == Status::Ok)
    {
        row.bytes_per_connection = idle
            .iter()
            .find(|(m, p, n, _)| *m == row.label() && *p == row.protocol && *n == row.connections)
            .map(|t| t.3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Concurrency, Option<usize>);
    impl Model for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn summary(&self) -> &'static str {
            "a model that only states its limits"
        }
        fn concurrency(&self) -> Concurrency {
            self.0
        }
        fn fd_limit(&self) -> Option<usize> {
            self.1
        }
        fn serve(&self, _: crate::server::model::ServeContext) -> io::Result<()> {
            Ok(())
        }
    }

    /// The syscalls are counted at the connection sweep's and churn's points alone.
    #[test]
    fn which_points_count_syscalls() {
        let plain = Point::new(Protocol::Echo, Mode::Closed, 10, 64);
        assert!(plain.counts_syscalls());
        assert!(Point::new(Protocol::Echo, Mode::Churn, 10, 64).counts_syscalls());
        assert!(!Point::new(Protocol::Echo, Mode::Idle, 1000, 64).counts_syscalls());
        let beside = Point {
            idle_beside: 1000,
            ..plain
        };
        assert!(!beside.counts_syscalls());
        let offered = Point {
            offered: true,
            rate: Some(1000.0),
            ..Point::new(Protocol::Echo, Mode::Open, 10, 64)
        };
        assert!(!offered.counts_syscalls());
        let stalled = Point {
            stall: Some(Duration::from_millis(100)),
            ..offered
        };
        assert!(!stalled.counts_syscalls());
        let open = Point {
            rate: Some(1000.0),
            ..Point::new(Protocol::Echo, Mode::Open, 10, 64)
        };
        assert!(open.counts_syscalls());
    }

    /// Each kind of limit refuses the points past it, and only those; churn is never refused
    /// for concurrency, since its clients wait their turn.
    #[test]
    fn unreachable_points_and_why() {
        let one = Fake(Concurrency::One, None);
        assert!(unreachable(&one, Mode::Closed, 1, 4, 20_000).is_none());
        assert!(
            unreachable(&one, Mode::Closed, 2, 4, 20_000)
                .expect("refused")
                .contains("one client at a time")
        );
        assert!(unreachable(&one, Mode::Churn, 100, 4, 20_000).is_none());
        assert!(unreachable(&one, Mode::Idle, 10, 4, 20_000).is_some());

        let pool = Fake(Concurrency::Workers, None);
        assert!(unreachable(&pool, Mode::Closed, 4, 4, 20_000).is_none());
        assert!(
            unreachable(&pool, Mode::Closed, 5, 4, 20_000)
                .expect("refused")
                .contains("--workers 5")
        );

        let select = Fake(Concurrency::Unbounded, Some(1024));
        assert!(unreachable(&select, Mode::Closed, 1000, 1, 20_000).is_none());
        assert!(
            unreachable(&select, Mode::Closed, 10_000, 1, 20_000)
                .expect("refused")
                .contains("FD_SETSIZE")
        );
        assert!(unreachable(&select, Mode::Churn, 10_000, 1, 20_000).is_some());

        let free = Fake(Concurrency::Unbounded, None);
        assert!(unreachable(&free, Mode::Closed, 10_000, 1, 20_000).is_none());
        assert!(
            unreachable(&free, Mode::Closed, 10_000, 1, 4096)
                .expect("refused")
                .contains("ulimit")
        );
    }

    /// Loaded rows get the idle figure of the same model, protocol and count, and no other.
    #[test]
    fn idle_memory_joins_the_matching_rows() {
        let mut idle = Row::new("m", "echo", Mode::Idle, 100, 64);
        idle.bytes_per_connection = Some(4096.0);
        let mut rows = vec![
            Row::new("m", "echo", Mode::Closed, 100, 64),
            Row::new("m", "echo", Mode::Closed, 10, 64),
            Row::new("n", "echo", Mode::Closed, 100, 64),
            idle,
        ];
        attach_idle_memory(&mut rows);
        let got: Vec<_> = rows.iter().map(|r| r.bytes_per_connection).collect();
        assert_eq!(got, [Some(4096.0), None, None, Some(4096.0)]);
    }
}
