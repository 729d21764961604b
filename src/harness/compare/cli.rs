//! The `compare` command line: raw arguments, turned into [`Options`], run with a progress bar,
//! printed and written.

use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::client::Via;
use super::rates::Rates;
use super::{Options, SweepEvent, classic};
use crate::harness::load::parse_duration;
use crate::harness::measure::placement::Cpus;
use crate::harness::report::diff;
use crate::harness::report::machine::Machine;
use crate::harness::report::row::Status;
use crate::harness::report::{self, Report};
use crate::server::accept_lock::AcceptLock;
use crate::server::model::{self, Model};
use crate::server::protocol::Protocol;
use crate::server::shutdown::Shutdown;

/// `server-models compare`: the arguments as typed.
#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// Models to compare (default: every registered model, in teaching order; with
    /// --preset classic, the designs of UNP ch. 30 and the event loops).
    pub models: Vec<String>,
    /// A ready-made sweep. `classic`: Stevens' UNP ch. 30 table — churn only, 5 client slots,
    /// 4000-byte echoes, pools of 15, prefork once per accept lock, and each design's CPU per
    /// connection less the iterative server's. Flags given beside it change its choices.
    #[arg(long, value_parser = [classic::NAME])]
    pub preset: Option<String>,
    /// Protocols, comma-separated: echo, http.
    #[arg(long, value_delimiter = ',', default_value = "echo")]
    pub protocol: Vec<String>,
    /// Connection counts of the sweep, comma-separated (C10K: 1,10,100,1000,10000)
    /// [default: 1,10,100,1000; classic: none]. With --idle-beside: the busy connections
    /// [default 10]; with --rates: the connections the rate is spread over [default 100].
    #[arg(long, value_delimiter = ',')]
    pub connections: Vec<usize>,
    /// Echo message sizes in bytes, comma-separated (64,4096,65536) [default: 64; classic: 4000].
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Open loop at this many requests per second (in total), instead of closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Connection slots of the churn sweep (connect, one request, close); 0 for none
    /// [default: 10; classic: 5].
    #[arg(long, value_delimiter = ',')]
    pub churn: Vec<usize>,
    /// Idle connections held for memory per connection, comma-separated; 0 for none
    /// [default: 1000; classic: none].
    #[arg(long, value_delimiter = ',')]
    pub idle: Vec<usize>,
    /// Busy beside idle: idle connections to hold beside the busy ones, comma-separated, one
    /// point per count, 0 the baseline; `none` for none. Given, the run is this experiment (no
    /// plain connection sweep; churn and idle only if asked for) [default: 0,1000,5000 beside
    /// 10 busy; classic, --rates: none].
    #[arg(long, value_delimiter = ',')]
    pub idle_beside: Vec<String>,
    /// Requests in flight per connection in the closed loop, sent back to back, comma-separated;
    /// one point per depth [default: 1].
    #[arg(long, value_delimiter = ',')]
    pub pipeline: Vec<usize>,
    /// Latency against offered load: open loop at these rates (requests/s, comma-separated), or
    /// `auto` to search each model's knee (doubling from 1000/s, then bisecting). Given, the
    /// run is this experiment (no plain connection sweep; churn and idle only if asked for).
    #[arg(long)]
    pub rates: Option<String>,
    /// The p99 a model must stay under for an offered rate to count towards its knee. 10 ms:
    /// on a machine whose cores are shared (a VM), wake-up jitter alone puts p99 near 1 ms far
    /// below any capacity, while a server past its capacity queues through the whole window and
    /// its p99 climbs to tens of milliseconds; on a quiet machine of its own, 1ms is stricter.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub slo_p99: Duration,
    /// How prefork's children take turns at accept, comma-separated: none, fcntl, flock, mutex;
    /// prefork runs once per lock [default: none; classic: all four].
    #[arg(long, value_delimiter = ',')]
    pub accept_lock: Vec<String>,
    /// Measured window of each point (1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each window.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Runs per point; the table shows the median.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Workers for every server (the pools serve this many clients at once); default: 100 for
    /// the pool models (classic: 15), each other model its own (one per CPU it may use: one,
    /// pinned).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The folder the report is written to.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Do not pin the server and the load generator to CPUs of their own.
    #[arg(long)]
    pub no_pin: bool,
    /// Do not count syscalls (by default each point of the connection sweep and churn runs once
    /// more, briefly, with the kernel's syscall tracepoints counted, where root and tracefs
    /// allow it).
    #[arg(long)]
    pub no_syscalls: bool,
    /// The CPUs the server runs on (0-3, 4-7, 0,2): the models with a worker per CPU get one
    /// per CPU [default: the first allowed CPU, or those --load-cpus leaves].
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<Cpus>,
    /// The CPUs the load generator runs on, one load thread each [default: the next allowed
    /// CPU, or those --server-cpus leaves].
    #[arg(long, value_name = "LIST")]
    pub load_cpus: Option<Cpus>,
    /// Server CPU counts to sweep, comma-separated (1,2,4,8), for the models that use more than
    /// one: each point runs on the lowest N of --server-cpus.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub server_cores: Vec<usize>,
    /// Run each load generator through this prefix, a command the user trusts to reach
    /// another host (`ssh host`, `ip netns exec client`); given several times, the connections
    /// are split among that many load processes, their histograms merged exactly. Needs
    /// --addr. The server is still measured here.
    #[arg(long, value_name = "CMD")]
    pub load_via: Vec<String>,
    /// With --load-via: the server's IP address as the load hosts see it (the port is each
    /// server's own).
    #[arg(long, value_name = "IP")]
    pub addr: Option<IpAddr>,
    /// The address every server listens on [default: 127.0.0.1; with --load-via, 0.0.0.0].
    #[arg(long, value_name = "IP")]
    pub listen: Option<IpAddr>,
    /// With --load-via: the server-models program to run through the prefix [default: this
    /// program's path].
    #[arg(long, value_name = "PATH")]
    pub load_bin: Option<String>,
    /// A report folder of an earlier run to compare this one with, figure by figure against
    /// the noise of the repeats: printed, and written as diff.md, diff.html, diff.json.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: the smallest relative change that counts (0.05: 5%).
    #[arg(long, default_value_t = diff::DEFAULT_THRESHOLD)]
    pub threshold: f64,
}

impl CompareArgs {
    /// The options these arguments ask for; an unknown model or protocol is an
    /// `InvalidInput` error naming the choices.
    pub fn options(&self) -> io::Result<Options> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let classic = self.preset.as_deref() == Some(classic::NAME);
        let rates: Option<Rates> = self
            .rates
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?;
        let idle_beside: Vec<usize> = self
            .idle_beside
            .iter()
            .filter(|k| k.trim() != "none")
            .map(|k| {
                k.trim().parse().map_err(|_| {
                    bad(format!(
                        "--idle-beside takes idle connection counts (0,1000,5000) or none, not '{k}'"
                    ))
                })
            })
            .collect::<io::Result<_>>()?;
        // Asking for --idle-beside or --rates makes the run that experiment: the other sweeps
        // run only when asked for too.
        let experiment = !idle_beside.is_empty() || rates.is_some();
        // A list left out takes the preset's choice, or the plain default.
        let or = |given: &[usize], plain: &[usize], preset: &[usize]| -> Vec<usize> {
            match (given.is_empty(), classic) {
                (false, _) => given.to_vec(),
                (true, true) => preset.to_vec(),
                (true, false) => plain.to_vec(),
            }
        };
        let (connections, beside_connections, rate_connections) = if experiment {
            let given = |default: usize| or(&self.connections, &[default], &[default]);
            (
                Vec::new(),
                if idle_beside.is_empty() {
                    Vec::new()
                } else {
                    given(10)
                },
                if rates.is_some() {
                    given(100)
                } else {
                    Vec::new()
                },
            )
        } else {
            (
                or(&self.connections, &[1, 10, 100, 1000], &[]),
                if classic { Vec::new() } else { vec![10] },
                Vec::new(),
            )
        };
        let idle_beside = match (self.idle_beside.is_empty(), classic || experiment) {
            (false, _) => idle_beside,
            (true, false) => DEFAULT_IDLE_BESIDE.to_vec(),
            (true, true) => Vec::new(),
        };
        let beside_connections = if idle_beside.is_empty() {
            Vec::new()
        } else {
            beside_connections
        };
        let sizes = or(&self.sizes, &[64], &[classic::SIZE]);
        let (churn, idle) = if experiment {
            (self.churn.clone(), self.idle.clone())
        } else {
            (
                or(&self.churn, &[10], &[classic::SLOTS]),
                or(&self.idle, &[1000], &[]),
            )
        };
        let pipeline = if self.pipeline.is_empty() {
            vec![1]
        } else {
            self.pipeline.clone()
        };
        if pipeline.contains(&0) {
            return Err(bad("--pipeline takes depths of 1 or more".into()));
        }
        if self.rate.is_some() && pipeline.iter().any(|&d| d > 1) {
            return Err(bad(
                "--pipeline is for the closed loop; with --rate each request goes when it is due"
                    .into(),
            ));
        }
        let names: Vec<String> = match (self.models.is_empty(), classic) {
            (false, _) => self.models.clone(),
            (true, true) => classic::MODELS.iter().map(|m| m.to_string()).collect(),
            (true, false) => Vec::new(),
        };
        let accept_locks = match (self.accept_lock.is_empty(), classic) {
            (false, _) => self
                .accept_lock
                .iter()
                .map(|l| l.parse::<AcceptLock>().map_err(bad))
                .collect::<io::Result<Vec<_>>>()?,
            (true, true) => classic::ACCEPT_LOCKS.to_vec(),
            (true, false) => vec![AcceptLock::None],
        };
        let models: Vec<&'static dyn Model> = if names.is_empty() {
            crate::variants::all().to_vec()
        } else {
            names
                .iter()
                .map(|name| {
                    model::find(name).ok_or_else(|| {
                        bad(format!(
                            "unknown model '{name}'; the models are: {}",
                            model::names().join(", ")
                        ))
                    })
                })
                .collect::<io::Result<_>>()?
        };
        let protocols = self
            .protocol
            .iter()
            .map(|p| p.parse::<Protocol>().map_err(bad))
            .collect::<io::Result<Vec<_>>>()?;
        let nonzero = |v: &[usize]| v.iter().copied().filter(|&n| n > 0).collect::<Vec<_>>();
        let connections = nonzero(&connections);
        let beside_connections = nonzero(&beside_connections);
        let rate_connections = nonzero(&rate_connections);
        let sizes = nonzero(&sizes);
        let churn = nonzero(&churn);
        let idle = nonzero(&idle);
        if (!idle_beside.is_empty() && beside_connections.is_empty())
            || (rates.is_some() && rate_connections.is_empty())
        {
            return Err(bad(
                "--idle-beside and --rates need at least one --connections count above 0".into(),
            ));
        }
        if connections.is_empty()
            && churn.is_empty()
            && idle.is_empty()
            && idle_beside.is_empty()
            && rates.is_none()
        {
            return Err(bad(
                "nothing to run: --connections, --churn, --idle, --idle-beside and --rates are all empty"
                    .into(),
            ));
        }
        if sizes.is_empty() {
            return Err(bad(
                "--sizes needs at least one size of 1 byte or more".into()
            ));
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(bad(
                "--rate must be a positive number of requests per second".into(),
            ));
        }
        if self.duration.is_zero() {
            return Err(bad("--duration must be positive".into()));
        }
        if self.no_pin
            && (self.server_cpus.is_some()
                || self.load_cpus.is_some()
                || !self.server_cores.is_empty())
        {
            return Err(bad(
                "--no-pin does not combine with --server-cpus, --load-cpus or --server-cores"
                    .into(),
            ));
        }
        let via = match (self.load_via.is_empty(), self.addr) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(bad(
                    "--addr is the server's address as the --load-via hosts see it: give --load-via too".into(),
                ));
            }
            (false, None) => {
                return Err(bad(
                    "--load-via needs --addr: the server's IP address as the load hosts see it"
                        .into(),
                ));
            }
            (false, Some(addr)) => Some(Via {
                prefixes: self.load_via.clone(),
                bin: match &self.load_bin {
                    Some(bin) => bin.clone(),
                    None => std::env::current_exe()?.display().to_string(),
                },
                addr,
            }),
        };
        if let Some(p) = self.load_via.iter().find(|p| p.trim().is_empty()) {
            return Err(bad(format!("--load-via '{p}' is empty")));
        }
        let listen = self.listen.unwrap_or(if via.is_some() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        });
        Ok(Options {
            models,
            protocols,
            connections,
            sizes,
            rate: self.rate,
            churn,
            idle,
            beside_thrifty: self.idle_beside.is_empty() && !experiment && !classic,
            idle_beside,
            beside_connections,
            pipeline,
            rates,
            rate_connections,
            slo_p99: self.slo_p99,
            warmup: self.warmup,
            duration: self.duration,
            repeat: self.repeat.max(1),
            workers: self.workers.map(|w| w.max(1)),
            pool_workers: if classic {
                classic::POOL_WORKERS
            } else {
                super::point::POOL_WORKERS
            },
            accept_locks,
            preset: self.preset.clone(),
            out: self.out.clone(),
            pin: !self.no_pin,
            syscalls: !self.no_syscalls,
            server_cpus: self.server_cpus,
            load_cpus: self.load_cpus,
            server_cores: self.server_cores.clone(),
            listen,
            via,
        })
    }
}

/// The busy-beside-idle sweep of a plain `compare`: enough to show select and poll slowing as
/// idle connections grow while the epoll and io_uring loops stay flat, within the default run's
/// three minutes (select stops at FD_SETSIZE, the pools at their workers).
pub const DEFAULT_IDLE_BESIDE: [usize; 3] = [0, 1000, 5000];

/// Runs `compare`: the sweep with a progress bar, the tables on stdout, the report written.
/// SIGINT stops the sweep after the current point; the rows so far are still reported.
pub fn run(args: &CompareArgs) -> io::Result<()> {
    let opts = args.options()?;
    // Read before the sweep: a missing baseline is said at once, and an --out that is the
    // baseline's own folder cannot overwrite it first.
    let baseline = match &args.baseline {
        Some(dir) => Some((dir, report::read(dir)?)),
        None => None,
    };
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--threshold must be a share of 0 or more (0.05 is 5%)",
        ));
    }
    let placement = super::place(&opts)?;
    let machine = Machine::describe();
    let shutdown = Shutdown::install()?;
    let interrupted = move || shutdown.requested();

    let total = (super::plan(&opts).len() * opts.repeat.max(1)) as u64;
    let bar = if io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(io::Error::other)?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut on_progress = |p: SweepEvent| match p {
        SweepEvent::Starting {
            model,
            point,
            index,
            total,
        } => {
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            let lock = point
                .accept_lock
                .map(|l| format!(" ({})", l.name()))
                .unwrap_or_default();
            let beside = match point.idle_beside {
                0 => String::new(),
                k => format!(" + {k} idle"),
            };
            let rate = point.rate.map(|r| format!(" at {r}/s")).unwrap_or_default();
            bar.set_message(format!(
                "{model}{lock}: {} {} × {}{beside}{rate}",
                point.protocol,
                point.mode.name(),
                point.connections
            ));
        }
        SweepEvent::Done { row } => {
            if row.status == Status::Failed {
                bar.println(format!(
                    "{} {} {} × {}: failed: {}",
                    row.label(),
                    row.protocol,
                    row.mode.name(),
                    row.connections,
                    row.note
                ));
            }
        }
    };
    let mut outcome = super::run(&opts, placement, &interrupted, &mut on_progress)?;
    bar.finish_and_clear();
    outcome.settings.baseline = args.baseline.as_ref().map(|d| d.display().to_string());

    print!("{}", report::terminal(&outcome.rows));
    let report = Report::new(
        &machine,
        &outcome.settings,
        &outcome.rows,
        outcome.wall,
        outcome.interrupted,
    );
    report::write(&opts.out, &report)?;
    println!(
        "\n{} rows in {:.0} s{}; report in {}",
        outcome.rows.len(),
        outcome.wall.as_secs_f64(),
        if outcome.interrupted {
            " (interrupted)"
        } else {
            ""
        },
        opts.out.join("index.md").display()
    );
    if let Some((dir, (old_rows, old_run))) = baseline {
        let mut d = diff::diff(&old_rows, &outcome.rows, args.threshold);
        let new_run = report::RunRecord {
            machine: machine.clone(),
            ..Default::default()
        };
        d.conditions = diff::conditions(old_run.as_ref(), Some(&new_run));
        let (old, new) = (dir.display().to_string(), opts.out.display().to_string());
        println!("\n{}", diff::terminal(&d, &old, &new, args.threshold));
        diff::write(&opts.out, &d, &old, &new, args.threshold)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report::row::Mode;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn options(args: &[&str]) -> io::Result<Options> {
        let cli = TestCli::try_parse_from(std::iter::once("compare").chain(args.iter().copied()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        cli.args.options()
    }

    /// Without a preset, the plain sweep; with `classic`, the book's: churn only, 4000 bytes,
    /// 5 slots, pools of 15, every accept lock, the ch. 30 designs first.
    #[test]
    fn the_classic_preset_fills_what_was_left_out() {
        let plain = options(&[]).expect("plain");
        assert_eq!(plain.connections, [1, 10, 100, 1000]);
        assert_eq!(
            (plain.sizes.as_slice(), plain.churn.as_slice()),
            (&[64][..], &[10][..])
        );
        assert_eq!(plain.idle, [1000]);
        assert_eq!(plain.idle_beside, DEFAULT_IDLE_BESIDE);
        assert_eq!(plain.beside_connections, [10]);
        assert_eq!(plain.accept_locks, [AcceptLock::None]);
        assert_eq!(plain.pool_workers, super::super::point::POOL_WORKERS);

        let book = options(&["--preset", "classic"]).expect("classic");
        assert!(book.connections.is_empty() && book.idle.is_empty());
        assert!(book.idle_beside.is_empty());
        assert_eq!(book.sizes, [classic::SIZE]);
        assert_eq!(book.churn, [classic::SLOTS]);
        assert_eq!(book.pool_workers, classic::POOL_WORKERS);
        assert_eq!(book.accept_locks, AcceptLock::ALL);
        let names: Vec<&str> = book.models.iter().map(|m| m.name()).collect();
        assert_eq!(names, classic::MODELS);

        // What is given wins over the preset.
        let mine = options(&[
            "--preset", "classic", "poll", "--sizes", "64", "--churn", "2",
        ])
        .expect("classic with choices");
        assert_eq!(
            (mine.sizes.as_slice(), mine.churn.as_slice()),
            (&[64][..], &[2][..])
        );
        assert_eq!(mine.models.len(), 1);
        assert!(options(&["--preset", "stevens"]).is_err());
        assert!(options(&["--accept-lock", "spin"]).is_err());
    }

    /// Prefork runs once per lock when locks are named, once (unnamed) when they are not; the
    /// other models once either way.
    #[test]
    fn prefork_runs_once_per_accept_lock() {
        let plan = |args: &[&str]| -> Vec<(String, Option<AcceptLock>)> {
            let opts = options(args).expect("options");
            super::super::plan(&opts)
                .into_iter()
                .map(|(m, p)| (m.name().to_string(), p.accept_lock))
                .collect()
        };
        let book = plan(&["--preset", "classic", "iterative", "prefork"]);
        let mut want = vec![("iterative".to_string(), None)];
        want.extend(AcceptLock::ALL.map(|l| ("prefork".to_string(), Some(l))));
        assert_eq!(book, want);
        let plain = plan(&[
            "prefork",
            "--connections",
            "1",
            "--churn",
            "0",
            "--idle",
            "0",
            "--idle-beside",
            "none",
        ]);
        assert_eq!(plain, [("prefork".to_string(), None)]);
    }

    /// `--idle-beside` and `--rates` make the run their experiment: `--connections` gives the
    /// busy (or rate) connections, with their own defaults, and the other sweeps run only when
    /// asked for; the plan has a point per K, per rate, or one search per model.
    #[test]
    fn the_experiments_take_over_the_sweep() {
        let beside = options(&["--idle-beside", "0,1000"]).expect("beside");
        assert!(beside.connections.is_empty() && beside.churn.is_empty() && beside.idle.is_empty());
        assert_eq!(
            (
                beside.idle_beside.as_slice(),
                beside.beside_connections.as_slice()
            ),
            (&[0, 1000][..], &[10][..])
        );
        let mine = options(&[
            "poll",
            "--idle-beside",
            "0,5",
            "--connections",
            "3",
            "--churn",
            "2",
        ])
        .expect("beside with choices");
        assert_eq!(
            (mine.beside_connections.as_slice(), mine.churn.as_slice()),
            (&[3][..], &[2][..])
        );
        let points: Vec<_> = super::super::plan(&mine)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(points.len(), 3);
        assert_eq!(
            points
                .iter()
                .map(|p| (p.mode, p.connections, p.idle_beside))
                .collect::<Vec<_>>(),
            [
                (Mode::Closed, 3, 0),
                (Mode::Closed, 3, 5),
                (Mode::Churn, 2, 0)
            ]
        );
        assert_eq!(points[1].held(), 8);
        assert!(options(&["--idle-beside", "lots"]).is_err());

        let auto = options(&["poll", "epoll-lt", "--rates", "auto"]).expect("rates");
        assert_eq!(auto.rate_connections, [100]);
        assert_eq!(auto.slo_p99, Duration::from_millis(10));
        let points = super::super::plan(&auto);
        assert_eq!(points.len(), 2, "one search per model");
        assert!(
            points
                .iter()
                .all(|(_, p)| p.search && p.offered && p.mode == Mode::Open)
        );
        let listed = options(&["poll", "--rates", "100,200", "--slo-p99", "5ms"]).expect("list");
        let rates: Vec<_> = super::super::plan(&listed)
            .into_iter()
            .map(|(_, p)| p.rate)
            .collect();
        assert_eq!(rates, [Some(100.0), Some(200.0)]);
        assert_eq!(listed.slo_p99, Duration::from_millis(5));
        assert!(options(&["--rates", "fast"]).is_err());
    }

    /// `--pipeline` adds a closed-loop point per depth; it refuses depth 0 and the open loop.
    #[test]
    fn pipeline_depths() {
        let opts = options(&[
            "poll",
            "--connections",
            "2",
            "--pipeline",
            "1,8",
            "--churn",
            "0",
            "--idle",
            "0",
            "--idle-beside",
            "none",
        ])
        .expect("pipelined");
        let depths: Vec<_> = super::super::plan(&opts)
            .into_iter()
            .map(|(_, p)| p.pipeline)
            .collect();
        assert_eq!(depths, [1, 8]);
        assert!(options(&["--pipeline", "0"]).is_err());
        assert!(options(&["--pipeline", "4", "--rate", "1000"]).is_err());
    }
}
