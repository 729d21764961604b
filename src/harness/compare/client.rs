//! Driving the load generator as a child process (`server-models load ... --json`), pinned to a
//! CPU of its own, within a time bound.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::harness::load::LoadReport;
use crate::harness::measure::placement;
use crate::server::protocol::Protocol;

/// What one load run is asked to do.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// The server.
    pub addr: SocketAddr,
    /// What the connections speak.
    pub protocol: Protocol,
    /// Connections (churn: connection slots).
    pub connections: usize,
    /// Echo message size.
    pub size: usize,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// Connect, one request, close.
    pub churn: bool,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    /// Before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// A finished load run.
#[derive(Debug)]
pub struct LoadRun {
    /// What the load generator reported.
    pub result: LoadReport,
    /// When the load process was started: its window begins `warmup` after this.
    pub started: Instant,
}

impl LoadPlan {
    /// The longest the run may take before it is stopped: the warm-up and the window, plus time
    /// to make the connections (the load generator's connect timeout, and a millisecond per
    /// connection for servers that accept slowly) and to close them.
    pub fn deadline(&self) -> Duration {
        self.warmup
            + self.duration
            + Duration::from_secs(10)
            + Duration::from_millis(self.connections as u64)
    }

    fn args(&self) -> Vec<String> {
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let mut args = vec![
            "load".to_string(),
            "--addr".into(),
            self.addr.to_string(),
            "--protocol".into(),
            self.protocol.name().into(),
            "--connections".into(),
            self.connections.to_string(),
            "--size".into(),
            // The load generator wants a size even for HTTP, which ignores it.
            self.size.max(1).to_string(),
            "--warmup".into(),
            secs(self.warmup),
            "--duration".into(),
            secs(self.duration),
            "--json".into(),
        ];
        if let Some(rate) = self.rate {
            args.extend(["--rate".into(), rate.to_string()]);
        }
        if self.churn {
            args.push("--churn".into());
        }
        if self.pipeline > 1 {
            args.extend(["--pipeline".into(), self.pipeline.to_string()]);
        }
        args
    }
}

/// Runs the load generator for `plan`, pinned to `cpu` if given, and parses its report. Fails
/// with the reason (its last stderr line, or the deadline passed) if it gives none.
/// `started` is told the instant the process starts (its window begins `plan.warmup` later);
/// `stop_early` is polled while waiting, so that an interrupt ends the run at once.
pub fn run_load(
    plan: &LoadPlan,
    cpu: Option<usize>,
    started: &dyn Fn(Instant),
    stop_early: &dyn Fn() -> bool,
) -> io::Result<LoadRun> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(plan.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cpu) = cpu {
        placement::pin_command(&mut command, cpu)?;
    }
    // The instant is taken before the spawn: the child, pinned beside this thread, may run and
    // start its own clock before `spawn` returns here, and its window must not end before the
    // one estimated from this instant (the last sample would then miss it).
    let start = Instant::now();
    let mut child = command.spawn()?;
    started(start);
    let stdout = drain(child.stdout.take())?;
    let stderr = drain(child.stderr.take())?;
    let status = wait_until(&mut child, start + plan.deadline(), stop_early)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let said = || {
        String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let Some(status) = status else {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the load generator did not finish within {:.0} s",
                plan.deadline().as_secs_f64()
            ),
        ));
    };
    if !status.success() {
        return Err(io::Error::other(format!(
            "the load generator failed ({status}): {}",
            said()
        )));
    }
    let result = serde_json::from_slice(&stdout).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the load generator's JSON: {e}"),
        )
    })?;
    Ok(LoadRun {
        result,
        started: start,
    })
}

/// Reads a child's pipe to the end on a thread of its own, so that neither pipe fills and
/// blocks the child while the other is read.
fn drain(pipe: Option<impl Read + Send + 'static>) -> io::Result<JoinHandle<Vec<u8>>> {
    let Some(mut pipe) = pipe else {
        return Err(io::Error::other("a pipe of the load generator is missing"));
    };
    thread::Builder::new()
        .name("load-pipe".into())
        .spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
}

/// Waits for `child` until `deadline`; past it (or when `stop_early` says so), kills and reaps
/// it and returns `None`.
pub fn wait_until(
    child: &mut Child,
    deadline: Instant,
    stop_early: &dyn Fn() -> bool,
) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline || stop_early() {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}
