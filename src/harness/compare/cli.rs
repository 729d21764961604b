//! The `compare` command line: raw arguments, turned into [`Options`], run with a progress bar,
//! printed and written.

use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::client::Via;
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
    /// [default: 1,10,100,1000; classic: none].
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
    /// Do not count syscalls (by default each loaded point runs once more with the kernel's
    /// syscall tracepoints counted, where root and tracefs allow it).
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
        // A list left out takes the preset's choice, or the plain default.
        let or = |given: &[usize], plain: &[usize], preset: &[usize]| -> Vec<usize> {
            match (given.is_empty(), classic) {
                (false, _) => given.to_vec(),
                (true, true) => preset.to_vec(),
                (true, false) => plain.to_vec(),
            }
        };
        let connections = or(&self.connections, &[1, 10, 100, 1000], &[]);
        let sizes = or(&self.sizes, &[64], &[classic::SIZE]);
        let churn = or(&self.churn, &[10], &[classic::SLOTS]);
        let idle = or(&self.idle, &[1000], &[]);
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
        let sizes = nonzero(&sizes);
        let churn = nonzero(&churn);
        let idle = nonzero(&idle);
        if connections.is_empty() && churn.is_empty() && idle.is_empty() {
            return Err(bad(
                "nothing to run: --connections, --churn and --idle are all empty".into(),
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

    let total = super::plan(&opts).len() as u64;
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
        SweepEvent::Starting { model, point, .. } => {
            let lock = point
                .accept_lock
                .map(|l| format!(" ({})", l.name()))
                .unwrap_or_default();
            bar.set_message(format!(
                "{model}{lock}: {} {} × {}",
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
            bar.inc(1);
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
        assert_eq!(plain.accept_locks, [AcceptLock::None]);
        assert_eq!(plain.pool_workers, super::super::point::POOL_WORKERS);

        let book = options(&["--preset", "classic"]).expect("classic");
        assert!(book.connections.is_empty() && book.idle.is_empty());
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
        ]);
        assert_eq!(plain, [("prefork".to_string(), None)]);
    }
}
