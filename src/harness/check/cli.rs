//! The `check` command line: which server, what is known about it, which cases; the table or
//! the JSON; the exit code.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use super::target::{Known, MODEL_WORKERS, Target};
use super::{Case, CheckReport, Scale, Verdict};
use crate::server::model;
use crate::server::protocol::Protocol;

/// `server-models check`: the arguments as typed.
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["cmd", "model"])))]
pub struct CheckArgs {
    /// The command that starts the server, with {port} where the port goes (and, if it needs
    /// it, {protocol}): it must listen on 127.0.0.1:{port}. Split into words as a shell would,
    /// run without one, in a process group of its own.
    #[arg(long, value_name = "COMMAND")]
    pub cmd: Option<String>,
    /// One of the workbook's models instead: its limits are known from the registry.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The protocol the server speaks.
    #[arg(long, default_value = "echo", value_parser = ["echo", "http"])]
    pub protocol: String,
    /// With --cmd: the server serves at most N clients at once by design (a pool of N); the
    /// cases then expect client N+1 to wait. Without it, no limit is assumed.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// With --cmd: the server refuses descriptors past N (select's FD_SETSIZE) with one log
    /// line per episode.
    #[arg(long, value_name = "N")]
    pub fd_limit: Option<usize>,
    /// With --cmd: SIGTERM makes the server close every connection, end every process it
    /// started and exit 0; the SIGTERM cases run only then.
    #[arg(long)]
    pub signals: bool,
    /// With --cmd: the server closes connections idle for SECS; the idle-timeout cases run
    /// only then.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// With --cmd: the server answers (HTTP: 408) and closes a connection whose request head
    /// is still incomplete SECS after its first byte; the slowloris case runs only then.
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<f64>,
    /// With --model: its workers, for the models that have a fixed number of them.
    #[arg(long, default_value_t = MODEL_WORKERS)]
    pub workers: usize,
    /// Run only these cases (comma-separated names; default: every case).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// How long a client waits for any one connect, reply or close before the case fails
    /// (20s, 500ms, 1.5).
    #[arg(long, value_parser = crate::harness::load::parse_duration)]
    pub timeout: Option<Duration>,
    /// Cases run at the same time, each against a server of its own.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// The full counts: 20 000 churned connections after the warm-up instead of 5 000.
    #[arg(long)]
    pub full: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A positive number of seconds as a duration; `None` for none, zero, or no sensible value.
fn seconds(secs: Option<f64>) -> Option<Duration> {
    secs.filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

impl CheckArgs {
    /// The target and the cases the arguments name; `InvalidInput` for a usage error.
    pub fn resolve(&self) -> io::Result<(Target, Protocol, Vec<&'static Case>)> {
        let usage = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let protocol: Protocol = self.protocol.parse().map_err(usage)?;
        let target = match (&self.cmd, &self.model) {
            (Some(cmd), None) => Target::command(
                cmd,
                Known {
                    concurrency: self.concurrency,
                    fd_limit: self.fd_limit,
                    signals: self.signals,
                    idle_timeout: seconds(self.idle_timeout),
                    header_timeout: seconds(self.header_timeout),
                },
            )?,
            (None, Some(name)) => {
                let model = model::find(name).ok_or_else(|| {
                    usage(format!(
                        "unknown model '{name}'; the models are: {}",
                        model::names().join(", ")
                    ))
                })?;
                if self.concurrency.is_some()
                    || self.fd_limit.is_some()
                    || self.signals
                    || self.idle_timeout.is_some()
                    || self.header_timeout.is_some()
                {
                    return Err(usage(
                        "--concurrency, --fd-limit, --signals, --idle-timeout and \
                         --header-timeout describe a --cmd server; a model is known from the \
                         registry"
                            .into(),
                    ));
                }
                Target::model(&std::env::current_exe()?, model, self.workers.max(1))
            }
            _ => return Err(usage("give either --cmd or --model".into())),
        };
        let cases = if self.cases.is_empty() {
            super::all().collect()
        } else {
            self.cases
                .iter()
                .map(|name| {
                    super::find(name).ok_or_else(|| {
                        usage(format!(
                            "unknown case '{name}'; the cases are: {}",
                            super::all().map(|c| c.name).collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect::<io::Result<_>>()?
        };
        Ok((target, protocol, cases))
    }
}

/// Runs `check`: prints the table (or the JSON) on stdout, one line per finished case on
/// stderr when it is a terminal. Returns whether every case that applies passed.
pub fn run(args: &CheckArgs) -> io::Result<bool> {
    let (target, protocol, cases) = args.resolve()?;
    // 1 500 clients at once need more descriptors than the usual soft limit of 1 024; the
    // servers started from here inherit the raised limit too.
    crate::harness::measure::placement::raise_fd_limit()?;
    if let Some(wait) = args.timeout {
        super::client::set_io_timeout(wait);
    }
    let scale = if args.full {
        Scale::FULL
    } else {
        Scale::DEFAULT
    };
    let total = cases.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tty = io::stderr().is_terminal();
    let report = CheckReport::run(&target, protocol, &cases, scale, args.jobs, |outcome| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if tty {
            eprintln!("[{n}/{total}] {} {}", outcome.case, outcome.verdict);
        }
    });
    let text = if args.json {
        serde_json::to_string(&report).map_err(io::Error::other)?
    } else {
        report.to_string()
    };
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
        _ => {}
    }
    Ok(report.cases.iter().all(|c| c.verdict != Verdict::Failed))
}
