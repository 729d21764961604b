//! The conformance suite as a library: every case the workbook holds its models to, runnable
//! against any server — one of the models, the C reference, nginx, a student's own.
//!
//! - [`target`]: the server under test — how to start it (a model of the registry, or any
//!   command with `{port}` in it), and what is known about it (how many clients it serves at
//!   once, its descriptor limit, whether SIGTERM is a graceful shutdown).
//! - [`client`]: the loopback clients the cases are made of, every wait bounded.
//! - [`cases`]: what every server must do — echo exactly, half-close, many clients, resets,
//!   slow readers, HTTP's framing, running out of descriptors, idle timeouts, SIGTERM.
//! - [`faults`]: what every server must survive — a worker process killed, the whole server
//!   stopped and continued, twenty thousand short connections, SIGTERM under load.
//! - [`cli`]: `server-models check`, which prints one row per case and `N passed, N failed`.
//!
//! Each case starts a fresh server of its own and stops it (and everything it forked) at the
//! end, so that cases never see each other's state and can run side by side. A case that needs
//! what is not known about an external server (a documented limit, a graceful SIGTERM) does not
//! run and says why; one that finds from the server's process tree that it does not apply (no
//! worker processes to kill) says what it saw.
//!
//! `cargo test` runs every case against every registered model (`tests/conformance.rs`), one
//! trial each, named `MODEL/PROTOCOL/CASE`.

pub mod cases;
pub mod cli;
pub mod client;
pub mod faults;
pub mod target;

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::harness::spawn::ServerProcess;
use crate::server::protocol::Protocol;
use client::{GET, connect, echo_exchange, pattern, read_http_response};
use target::{Known, ServerOptions, Target};

/// The body every workbook server (and the C reference) answers a GET with; another server's
/// body is taken as it comes, as long as the status is 200.
pub const HELLO: &[u8] = b"Hello, world!";

/// One case: a name, the protocols it speaks, and what it does.
pub struct Case {
    /// The case's name: the last part of a trial's name (`epoll-lt/echo/half_close`).
    pub name: &'static str,
    /// The protocols it applies to.
    pub protocols: &'static [Protocol],
    /// Conformance (what a server does) or fault (what it survives).
    pub group: Group,
    run: fn(&CaseRun) -> Result<(), CaseError>,
}

/// Which part of the suite a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// What a server does with well-behaved and hostile clients.
    Conformance,
    /// What it survives: signals, killed workers, churn.
    Fault,
}

/// Why a case did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseError {
    /// The server did something it must not; the message says what.
    Failed(String),
    /// The case does not apply to this server; the message says why (what is not known about
    /// it, or what its process tree showed).
    NotApplicable(String),
}

impl CaseError {
    /// A case that does not apply, and why.
    pub fn not_applicable(why: impl Into<String>) -> CaseError {
        CaseError::NotApplicable(why.into())
    }
}

impl From<io::Error> for CaseError {
    fn from(e: io::Error) -> CaseError {
        CaseError::Failed(client::explain(&e))
    }
}

impl From<nix::Error> for CaseError {
    fn from(e: nix::Error) -> CaseError {
        CaseError::Failed(e.to_string())
    }
}

impl From<String> for CaseError {
    fn from(s: String) -> CaseError {
        CaseError::Failed(s)
    }
}

impl From<&str> for CaseError {
    fn from(s: &str) -> CaseError {
        CaseError::Failed(s.to_string())
    }
}

/// `Ok` if `ok`, else a failure saying `what`.
pub fn ensure(ok: bool, what: impl Into<String>) -> Result<(), CaseError> {
    if ok {
        Ok(())
    } else {
        Err(CaseError::Failed(what.into()))
    }
}

/// How much the counted cases do: the default keeps `cargo test` fast, `full` is the figure
/// the suite was designed around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Scale {
    /// Connections opened and closed before the churn case takes its baseline.
    pub churn_warmup: usize,
    /// Connections opened and closed after the baseline.
    pub churn: usize,
}

impl Scale {
    /// For `cargo test` and a plain `check`: 2 000 connections of warm-up, then 5 000.
    pub const DEFAULT: Scale = Scale {
        churn_warmup: 2_000,
        churn: 5_000,
    };

    /// `check --full` (and `SERVER_MODELS_CHECK_FULL=1` for `cargo test`): 2 000, then 20 000.
    pub const FULL: Scale = Scale {
        churn_warmup: 2_000,
        churn: 20_000,
    };
}

/// One case being run against one server in one protocol: what the case functions are given.
pub struct CaseRun<'a> {
    /// The server under test.
    pub target: &'a Target,
    /// The protocol the server speaks.
    pub protocol: Protocol,
    /// How much the counted cases do.
    pub scale: Scale,
}

impl CaseRun<'_> {
    /// Starts a fresh server with the default options.
    pub fn start(&self) -> Result<ServerProcess, CaseError> {
        self.start_with(&ServerOptions::default())
    }

    /// Starts a fresh server as `opts` asks.
    pub fn start_with(&self, opts: &ServerOptions) -> Result<ServerProcess, CaseError> {
        Ok(self.target.start(self.protocol, opts)?)
    }

    /// What is known about the server.
    pub fn known(&self) -> &Known {
        self.target.known()
    }

    /// How many clients the server serves at once, if limited.
    pub fn limit(&self) -> Option<usize> {
        self.known().concurrency
    }

    /// The server's name for messages: the model, or the command.
    pub fn name(&self) -> &str {
        self.target.name()
    }

    /// Fails as not applicable unless the server is known to shut down gracefully on SIGTERM.
    pub fn require_signals(&self) -> Result<(), CaseError> {
        if self.known().signals {
            Ok(())
        } else {
            Err(CaseError::not_applicable(
                "needs a server that exits 0 on SIGTERM after closing every connection \
                 (say so with --signals)",
            ))
        }
    }

    /// The server's idle timeout, or not applicable without one.
    pub fn require_idle_timeout(&self) -> Result<Duration, CaseError> {
        self.known().idle_timeout.ok_or_else(|| {
            CaseError::not_applicable(
                "needs a server that closes idle connections (say after how long with \
                 --idle-timeout SECS)",
            )
        })
    }

    /// The server's request-head deadline, or not applicable without one.
    pub fn require_header_timeout(&self) -> Result<Duration, CaseError> {
        self.known().header_timeout.ok_or_else(|| {
            CaseError::not_applicable(
                "needs a server with a deadline for a whole request head (say how long with \
                 --header-timeout SECS)",
            )
        })
    }

    /// One request and its reply on `s`, checked: an echo of 64 + `seed` pattern bytes, or a
    /// GET answered 200 (with the workbook's body, for one of its models).
    pub fn exchange(&self, s: &mut TcpStream, seed: u8) -> Result<(), CaseError> {
        match self.protocol {
            Protocol::Echo => {
                let msg = pattern(64 + seed as usize, seed);
                ensure(
                    echo_exchange(s, &msg)? == msg,
                    "echo reply differs from the message",
                )
            }
            Protocol::Http => {
                io::Write::write_all(s, GET)?;
                let resp = read_http_response(s)?;
                ensure(
                    self.good_response(resp.status, &resp.body),
                    format!("unexpected response {:?} {:?}", resp.head, resp.body),
                )
            }
        }
    }

    /// Whether an HTTP response is the answer to a plain GET: 200, and for one of the
    /// workbook's models, its body.
    pub fn good_response(&self, status: u16, body: &[u8]) -> bool {
        status == 200 && (self.target.registry_model().is_none() || body == HELLO)
    }

    /// A connected client that has made one checked exchange.
    pub fn served_client(&self, server: &ServerProcess, seed: u8) -> Result<TcpStream, CaseError> {
        let mut s = connect(server.addr())?;
        self.exchange(&mut s, seed)?;
        Ok(s)
    }
}

/// Both protocols.
const BOTH: &[Protocol] = &[Protocol::Echo, Protocol::Http];
/// Echo only.
const ECHO: &[Protocol] = &[Protocol::Echo];
/// HTTP only.
const HTTP: &[Protocol] = &[Protocol::Http];

impl Case {
    /// A case of `group`: its name, the protocols it speaks, and what it does.
    const fn new(
        name: &'static str,
        protocols: &'static [Protocol],
        group: Group,
        run: fn(&CaseRun) -> Result<(), CaseError>,
    ) -> Case {
        Case {
            name,
            protocols,
            group,
            run,
        }
    }

    /// Whether the case speaks `protocol`.
    pub fn applies_to(&self, protocol: Protocol) -> bool {
        self.protocols.contains(&protocol)
    }

    /// Runs the case against `target` in `protocol` and says how it went. A panic inside the
    /// case is a failure with its message, never the end of the run.
    pub fn run(&self, target: &Target, protocol: Protocol, scale: Scale) -> CaseOutcome {
        let started = Instant::now();
        let result = if self.applies_to(protocol) {
            let run = CaseRun {
                target,
                protocol,
                scale,
            };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.run)(&run)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into());
                    Err(CaseError::Failed(format!("the case panicked: {what}")))
                })
        } else {
            Err(CaseError::not_applicable(format!(
                "{} only",
                self.protocols
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        };
        let (verdict, reason) = match result {
            Ok(()) => (Verdict::Passed, None),
            Err(CaseError::Failed(why)) => (Verdict::Failed, Some(why)),
            Err(CaseError::NotApplicable(why)) => (Verdict::Skipped, Some(why)),
        };
        CaseOutcome {
            case: self.name.to_string(),
            group: self.group,
            verdict,
            reason,
            seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        }
    }
}

/// Every case, conformance first, then the faults, in the order `check` prints them.
pub fn all() -> impl Iterator<Item = &'static Case> {
    cases::CASES.iter().chain(faults::CASES.iter())
}

/// Finds a case by name.
pub fn find(name: &str) -> Option<&'static Case> {
    all().find(|c| c.name == name)
}

/// How one case went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The server did everything the case asks.
    Passed,
    /// It did not; the reason says what it did instead.
    Failed,
    /// The case does not apply to it and did not run (or stopped once it saw so); the reason
    /// says why.
    Skipped,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Passed => "pass",
            Verdict::Failed => "FAIL",
            Verdict::Skipped => "skip",
        })
    }
}

/// One case's outcome, as `check` prints it and `check --json` writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseOutcome {
    /// The case's name.
    pub case: String,
    /// Conformance or fault.
    pub group: Group,
    /// Passed, failed, or skipped (not applicable).
    pub verdict: Verdict,
    /// What went wrong, or why the case does not apply; `None` when it passed.
    pub reason: Option<String>,
    /// How long the case took, start of its server to its reaping, in seconds.
    pub seconds: f64,
}

/// A whole `check` run: the server, what was known about it, and every case's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    /// The model, or the command template.
    pub target: String,
    /// The protocol spoken.
    pub protocol: String,
    /// What the run took as known about the server.
    pub known: Known,
    /// How much the counted cases did.
    pub scale: Scale,
    /// One outcome per case, in the suite's order.
    pub cases: Vec<CaseOutcome>,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Cases skipped: they do not apply to this server.
    pub skipped: usize,
}

impl CheckReport {
    /// Runs `cases` against `target`, `jobs` at a time (each case starts its own server), and
    /// calls `progress` with each outcome as it comes in.
    pub fn run(
        target: &Target,
        protocol: Protocol,
        cases: &[&'static Case],
        scale: Scale,
        jobs: usize,
        progress: impl Fn(&CaseOutcome) + Sync,
    ) -> CheckReport {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let outcomes: Mutex<Vec<Option<CaseOutcome>>> = Mutex::new(vec![None; cases.len()]);
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, cases.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break };
                        let outcome = case.run(target, protocol, scale);
                        progress(&outcome);
                        outcomes.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                    }
                });
            }
        });
        let cases: Vec<CaseOutcome> = outcomes
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .flatten()
            .collect();
        let count = |v: Verdict| cases.iter().filter(|c| c.verdict == v).count();
        CheckReport {
            target: target.name().to_string(),
            protocol: protocol.name().to_string(),
            known: target.known().clone(),
            scale,
            passed: count(Verdict::Passed),
            failed: count(Verdict::Failed),
            skipped: count(Verdict::Skipped),
            cases,
        }
    }
}

impl fmt::Display for CheckReport {
    /// The table: one row per case, the reason beside every failure and every case that does
    /// not apply, and the closing `N passed, N failed` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .cases
            .iter()
            .map(|c| c.case.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(f, "{:width$}  result  time    reason", "case")?;
        for c in &self.cases {
            let row = format!(
                "{:width$}  {:6}  {:>5.1}s  {}",
                c.case,
                c.verdict.to_string(),
                c.seconds,
                c.reason.as_deref().unwrap_or("").replace('\n', " | ")
            );
            writeln!(f, "{}", row.trim_end())?;
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}
