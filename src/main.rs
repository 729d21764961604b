//! `server-models`: list the models, serve with one, drive one with load, compare them all,
//! check any server against the conformance and fault cases, render a report again, tell
//! what changed between two runs.
//!
//! Errors reach the user as one line and an exit code: 2 for a usage error (an unknown model),
//! 1 for anything else (an address in use). Library code returns `io::Result`; only this file
//! turns errors into messages.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use server_models::harness::compare::point::POOL_WORKERS;
use server_models::server::model::{self, Concurrency, Config, ServeContext};
use server_models::server::net::{self, ListenOptions};
use server_models::server::protocol::{DEFAULT_MAX_BODY, Protocol};
use server_models::server::shutdown::Shutdown;

#[derive(Parser)]
#[command(
    name = "server-models",
    version,
    about = "The classic ways of serving many TCP connections, side by side"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models, in teaching order.
    List,
    /// Serve with one model until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Run a lab: real sockets on loopback putting one classic claim to this kernel.
    Lab(LabArgs),
    /// Drive a server with load: closed loop, open loop (--rate) or churn; report latency,
    /// throughput, errors and the client's own CPU.
    Load(LoadArgs),
    /// Compare the models: the same sweep against each, a table, and a report with plots.
    Compare(Box<server_models::harness::compare::cli::CompareArgs>),
    /// Render a compare report again (index.md, index.html, the plots) from its folder's
    /// results.json and run.json, running nothing.
    Report(ReportArgs),
    /// What changed between two compare runs: per model and point, each figure's ratio, past
    /// the noise of the runs' repeats; a table, and diff.md, diff.html, diff.json.
    Diff(DiffArgs),
    /// Run the conformance and fault cases against a server: one of the models, or any command
    /// with {port}; a table of cases, `N passed, N failed`, exit 1 if any failed.
    Check(server_models::harness::check::cli::CheckArgs),
    /// A process with a known footprint, for the measurement tests.
    #[command(subcommand, hide = true)]
    Probe(server_models::harness::measure::probe::Probe),
}

#[derive(Args)]
struct ReportArgs {
    /// The report folder (compare's --out).
    dir: std::path::PathBuf,
}

#[derive(Args)]
struct DiffArgs {
    /// The old report folder (results.json).
    old: std::path::PathBuf,
    /// The new report folder.
    new: std::path::PathBuf,
    /// The smallest relative change that counts, whatever the spread of the repeats (0.05: 5%).
    #[arg(long, default_value_t = server_models::harness::report::diff::DEFAULT_THRESHOLD)]
    threshold: f64,
    /// Where diff.md, diff.html and diff.json go [default: the new folder].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct LabArgs {
    /// The lab; without one, list the labs.
    name: Option<String>,
    /// Print the observations as JSON instead of the story.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LoadArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The protocol to speak.
    #[arg(long, default_value = "echo", value_parser = ["echo", "http"])]
    protocol: String,
    /// Connections open at once (with --churn: connection slots).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// The measured window, after the warm-up (10s, 500ms, 1.5).
    #[arg(long, default_value = "10s", value_parser = server_models::harness::load::parse_duration)]
    duration: Duration,
    /// Echo message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Open loop: total requests per second over all connections; latency from the schedule.
    #[arg(long, conflicts_with = "churn")]
    rate: Option<f64>,
    /// Threads, each with its own epoll and a share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Time before the measured window [default: 1s, or a fifth of --duration if shorter].
    #[arg(long, value_parser = server_models::harness::load::parse_duration)]
    warmup: Option<Duration>,
    /// Connect, one request, close, as fast as possible on every slot.
    #[arg(long)]
    churn: bool,
    /// How long a connect or a reply may take before it counts as timed out.
    #[arg(long, default_value = "5s", value_parser = server_models::harness::load::parse_duration)]
    timeout: Duration,
    /// Stop after this many requests (no warm-up; --duration still bounds the run).
    #[arg(long)]
    requests: Option<u64>,
    /// Requests in flight per connection, sent back to back, replies checked in order
    /// (closed loop only).
    #[arg(long, default_value_t = 1, conflicts_with_all = ["churn", "rate"])]
    pipeline: usize,
    /// Print one JSON object (schema in README.md) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Print a line on stderr when the measured window opens and when it closes (for a
    /// harness driving this load on another host).
    #[arg(long, hide = true)]
    mark_window: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// The model (see `server-models list`).
    model: String,
    /// Address to listen on; port 0 picks a free one (the listening line tells which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The protocol every connection speaks.
    #[arg(long, default_value = "echo", value_parser = ["echo", "http"])]
    protocol: String,
    /// Threads or processes, for the models that have a fixed number of them.
    #[arg(long)]
    workers: Option<usize>,
    /// Close connections idle for this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<f64>,
    /// Answer (HTTP: 408) and close a connection whose request head is still incomplete this
    /// many seconds after its first byte; 0: no deadline.
    #[arg(long, value_name = "SECS", default_value_t = server_models::server::model::DEFAULT_HEADER_TIMEOUT.as_secs_f64())]
    header_timeout: f64,
    /// Pending output per connection past which it is not read until the peer drains it.
    #[arg(long, value_name = "BYTES")]
    out_cap: Option<usize>,
    /// HTTP: the largest request body accepted; a longer one is answered 413 and closed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY)]
    max_body: u64,
    /// Accept queue length asked of listen(2); the kernel caps it at net.core.somaxconn.
    /// (At most 4096, the C library's SOMAXCONN, which nix's listen() enforces.)
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(i32).range(1..=4096))]
    backlog: i32,
    /// How prefork's children serialize accept: none, fcntl (record lock), flock, mutex.
    #[arg(long, default_value = "none", value_parser = ["none", "fcntl", "flock", "mutex"])]
    accept_lock: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            let models = server_models::variants::all();
            let width = models.iter().map(|m| m.name().len()).max().unwrap_or(0);
            for m in models {
                println!("{:width$}  {}", m.name(), m.summary());
            }
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(args),
        Command::Lab(args) => lab(args),
        Command::Load(args) => load(args),
        Command::Compare(args) => match server_models::harness::compare::cli::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                eprintln!("server-models compare: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("server-models compare: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => match server_models::harness::check::cli::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                eprintln!("server-models check: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("server-models check: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Report(args) => match server_models::harness::report::rerender(&args.dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("server-models report: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Diff(args) => diff(args),
        Command::Probe(probe) => match server_models::harness::measure::probe::run(&probe) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server-models probe: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Lists the labs, or runs one. Runs in this process, which has no other thread: the labs
/// that fork need that.
fn lab(args: LabArgs) -> ExitCode {
    use server_models::lab;
    let Some(name) = args.name else {
        let width = lab::all().iter().map(|l| l.name.len()).max().unwrap_or(0);
        for l in lab::all() {
            println!("{:width$}  {}", l.name, l.summary);
        }
        return ExitCode::SUCCESS;
    };
    let Some(chosen) = lab::find(&name) else {
        let names: Vec<&str> = lab::all().iter().map(|l| l.name).collect();
        eprintln!(
            "server-models: unknown lab '{name}'; the labs are: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    match lab::run(chosen, !args.json) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("server-models: lab {name}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server-models: lab {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Compares two report folders; exit 0 whatever changed (a change is an answer, not an error).
fn diff(args: DiffArgs) -> ExitCode {
    use server_models::harness::report::diff;
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        eprintln!("server-models diff: --threshold must be a share of 0 or more (0.05 is 5%)");
        return ExitCode::from(2);
    }
    let (old, new) = (
        args.old.display().to_string(),
        args.new.display().to_string(),
    );
    let run = || -> std::io::Result<()> {
        let d = diff::compare_dirs(&args.old, &args.new, args.threshold)?;
        let out = args.out.clone().unwrap_or_else(|| args.new.clone());
        let files = diff::write(&out, &d, &old, &new, args.threshold)?;
        let written: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let text = diff::terminal(&d, &old, &new, args.threshold);
        // A reader that went away (`diff ... | head`) is not a failure.
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{text}\nwritten: {}", written.join(", ")) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server-models diff: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: LoadArgs) -> ExitCode {
    let protocol: Protocol = match args.protocol.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("server-models: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = server_models::harness::load::LoadOptions {
        size: args.size,
        rate: args.rate,
        threads: args.threads,
        warmup: args.warmup,
        churn: args.churn,
        timeout: args.timeout,
        requests: args.requests,
        mark_window: args.mark_window,
        pipeline: args.pipeline,
        ..server_models::harness::load::LoadOptions::new(
            args.addr,
            protocol,
            args.connections,
            args.duration,
        )
    };
    let report = match server_models::harness::load::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("server-models: load: {e}");
            return ExitCode::from(if e.kind() == std::io::ErrorKind::InvalidInput {
                2
            } else {
                1
            });
        }
    };
    let text = if args.json {
        match serde_json::to_string(&report) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("server-models: load: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.to_string()
    };
    // A reader that went away (`load ... | head -1`) is not a failure of the run.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("server-models: load: writing the report: {e}");
        return ExitCode::FAILURE;
    }
    // The report is printed either way (its errors say why), but a run in which nothing was
    // served is a failure for a script or a shell.
    if report.requests == 0 {
        let e = &report.errors;
        eprintln!(
            "server-models: load: no request completed (refused {}, reset {}, timed out {}, mismatch {}, other {})",
            e.refused, e.reset, e.timed_out, e.mismatch, e.other
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs) -> ExitCode {
    let Some(model) = model::find(&args.model) else {
        eprintln!(
            "server-models: unknown model '{}'; the models are: {}",
            args.model,
            model::names().join(", ")
        );
        return ExitCode::from(2);
    };
    let protocol: Protocol = match args.protocol.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("server-models: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    // A pool serves as many clients at once as it has workers: with one per CPU, two idle
    // clients would block everyone on a 2-core machine. So the pools get the size `compare`
    // gives them; every other model keeps one worker per CPU it may use.
    config.workers = match (args.workers, model.concurrency()) {
        (Some(w), _) => w.max(1),
        (None, Concurrency::Workers) => POOL_WORKERS,
        (None, _) => config.workers,
    };
    if let Some(cap) = args.out_cap {
        config.out_cap = cap.max(1);
    }
    config.max_body = args.max_body;
    config.idle_timeout = args
        .idle_timeout
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    config.header_timeout = Some(args.header_timeout)
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    match args.accept_lock.parse() {
        Ok(lock) => config.accept_lock = lock,
        Err(e) => {
            eprintln!("server-models: {e}");
            return ExitCode::from(2);
        }
    }

    let run = || -> std::io::Result<()> {
        let shutdown = Shutdown::install()?;
        let listener = net::listen(
            args.addr,
            &ListenOptions {
                backlog: args.backlog,
                reuse_port: model.reuse_port(),
            },
        )?;
        let local = listener.local_addr()?;
        server_models::event!(
            "{} listening on {} (protocol {}, workers {})",
            model.name(),
            local,
            protocol,
            config.workers
        );
        model.serve(ServeContext {
            listener,
            protocol,
            shutdown,
            config,
            counter: Default::default(),
        })?;
        server_models::event!("{} shut down cleanly", model.name());
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server-models: {}: {e}", model.name());
            ExitCode::FAILURE
        }
    }
}
