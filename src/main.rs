//! `server-models`: list the models, serve with one, drive one with load, compare them all.
//!
//! Errors reach the user as one line and an exit code: 2 for a usage error (an unknown model),
//! 1 for anything else (an address in use). Library code returns `io::Result`; only this file
//! turns errors into messages.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use server_models::server::model::{self, Config, ServeContext};
use server_models::server::net::{self, ListenOptions};
use server_models::server::protocol::Protocol;
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
    /// A process with a known footprint, for the measurement tests.
    #[command(subcommand, hide = true)]
    Probe(server_models::harness::measure::probe::Probe),
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
    /// Pending output per connection past which it is not read until the peer drains it.
    #[arg(long, value_name = "BYTES")]
    out_cap: Option<usize>,
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
    if let Some(w) = args.workers {
        config.workers = w.max(1);
    }
    if let Some(cap) = args.out_cap {
        config.out_cap = cap.max(1);
    }
    config.idle_timeout = args
        .idle_timeout
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
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
