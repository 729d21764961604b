//! Driving the load generator as a child process (`server-models load ... --json`), pinned to
//! CPUs of its own, within a time bound; or as several, each through a prefix that runs it on
//! another host ([`run_via`]), their histograms merged exactly.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::harness::load::{Errors, Latency, LoadReport, WINDOW_CLOSED, WINDOW_OPEN, wire};
use crate::harness::measure::placement::{self, Cpus};
use crate::harness::report::row::LoadPart;
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
    /// Load threads (one per load CPU), each with its own epoll and a share of the connections.
    pub threads: usize,
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
        if self.threads > 1 {
            args.extend(["--threads".into(), self.threads.to_string()]);
        }
        if self.pipeline > 1 {
            args.extend(["--pipeline".into(), self.pipeline.to_string()]);
        }
        args
    }
}

/// Runs the load generator for `plan`, pinned to `cpus` if given, and parses its report. Fails
/// with the reason (its last stderr line, or the deadline passed) if it gives none.
/// `started` is told the instant the process starts (its window begins `plan.warmup` later);
/// `stop_early` is polled while waiting, so that an interrupt ends the run at once.
pub fn run_load(
    plan: &LoadPlan,
    cpu: Option<Cpus>,
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
    if let Some(cpus) = cpu
        && let Err(e) = check_placement(&mut child, start + plan.warmup / 2, cpus)
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
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
    // A load in which no request completed exits 1 but still prints its report, whose errors
    // say why: the caller words the failure from it.
    let served_nothing =
        || serde_json::from_slice::<LoadReport>(&stdout).is_ok_and(|r| r.requests == 0);
    if !status.success() && !served_nothing() {
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

/// Checks, once the load's threads are up (at `when`, within its warm-up), that every one of
/// them may run on exactly `cpus`, as /proc reports it. A load already finished is not checked.
fn check_placement(child: &mut Child, when: Instant, cpus: Cpus) -> io::Result<()> {
    thread::sleep(when.saturating_duration_since(Instant::now()));
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    match placement::check_tree_affinity(child.id() as i32, cpus) {
        Ok(_) => Ok(()),
        Err(e) if crate::harness::measure::procfs::vanished(&e) => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "the load generator's placement: {e}"
        ))),
    }
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

/// The load on other hosts (`compare --load-via`): each load process is run through a prefix
/// the user already trusts — `ssh host`, `ip netns exec client` — and the connections are
/// split among them. The server is still measured here, on its own host.
#[derive(Clone, Debug)]
pub struct Via {
    /// One prefix per load process, as typed; the shell reads it, so quoting works as there.
    pub prefixes: Vec<String>,
    /// The program run through each prefix (this executable's path unless told otherwise:
    /// on another host it must be there, or on its PATH).
    pub bin: String,
    /// The server's address as the load hosts see it; the port is the server's own.
    pub addr: IpAddr,
}

/// What the load processes of one run measured together.
#[derive(Debug)]
pub struct ViaRun {
    /// Their reports merged: counts and rates summed, the latency from their histograms merged
    /// exactly, the CPU of the busiest.
    pub result: LoadReport,
    /// When the last of them opened its window, as its line reached this host.
    pub from: Instant,
    /// When the first of them closed its window.
    pub to: Instant,
    /// Requests inside [`from`, `to`]: each process's requests times the share of its window
    /// that falls there. The server's CPU over [`from`, `to`] is divided by this.
    pub requests_in_window: f64,
    /// Each process's share and report.
    pub parts: Vec<LoadPart>,
}

/// `n` connections split among `k` processes: as even as can be, the first ones one more.
pub fn split(n: usize, k: usize) -> Vec<usize> {
    let k = k.max(1);
    (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
}

/// One load process started through its prefix, and what its stderr has said.
struct Remote {
    via: String,
    connections: usize,
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    marks: Arc<Mutex<Marks>>,
}

#[derive(Default)]
struct Marks {
    open: Option<Instant>,
    closed: Option<Instant>,
    last_line: String,
}

/// Runs `plan` as one load process per prefix of `via` (processes whose share would be no
/// connection are not started), each with `--mark-window` so that the window's edges are
/// known here; `mark` is told the instant each edge arrives (to sample the server then).
/// Fails with the process's last stderr line if any fails, or if their windows do not overlap.
pub fn run_via(
    plan: &LoadPlan,
    via: &Via,
    cpus: Option<Cpus>,
    mark: &(dyn Fn(Instant) + Sync),
    stop_early: &dyn Fn() -> bool,
) -> io::Result<ViaRun> {
    let shares = split(plan.connections, via.prefixes.len());
    // Starting a process on another host (an ssh handshake) comes on top of the local bound.
    let deadline = Instant::now() + plan.deadline() + Duration::from_secs(10);
    std::thread::scope(|scope| {
        let mut remotes = Vec::new();
        let mut failure = None;
        for (prefix, &connections) in via.prefixes.iter().zip(&shares) {
            if connections == 0 {
                continue;
            }
            let share = LoadPlan {
                addr: SocketAddr::new(via.addr, plan.addr.port()),
                connections,
                rate: plan
                    .rate
                    .map(|r| r * connections as f64 / plan.connections as f64),
                threads: plan.threads.min(connections),
                ..plan.clone()
            };
            match start_remote(scope, &share, prefix, &via.bin, cpus, mark) {
                Ok(r) => remotes.push(r),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut reports = Vec::new();
        for mut r in remotes {
            let status = match &failure {
                None => wait_until(&mut r.child, deadline, stop_early),
                Some(_) => wait_until(&mut r.child, Instant::now(), &|| true),
            };
            let stdout = r.stdout.join().unwrap_or_default();
            let marks = r.marks.lock().unwrap_or_else(|p| p.into_inner());
            let said = format!("load via '{}': {}", r.via, marks.last_line);
            let parsed = match status {
                Ok(Some(_)) => serde_json::from_slice::<LoadReport>(&stdout).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{said} (its JSON: {e})"),
                    )
                }),
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("load via '{}' did not finish in time", r.via),
                )),
                Err(e) => Err(e),
            };
            match (parsed, marks.open, marks.closed) {
                (Ok(report), Some(open), Some(closed)) => {
                    reports.push((r.via.clone(), r.connections, report, open, closed));
                }
                (Ok(_), _, _) => {
                    failure.get_or_insert(io::Error::other(format!(
                        "{said}: no window marks on its stderr (is it this version of server-models?)"
                    )));
                }
                (Err(e), _, _) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        merge_via(plan, reports)
    })
}

/// Starts one load process through `prefix`: `sh -c 'exec PREFIX "$@"' sh BIN load ARGS...`, so
/// the prefix is read as the user typed it and the arguments pass untouched.
fn start_remote<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    plan: &LoadPlan,
    prefix: &str,
    bin: &str,
    cpus: Option<Cpus>,
    mark: &'scope (dyn Fn(Instant) + Sync),
) -> io::Result<Remote> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("exec {prefix} \"$@\""))
        .arg("sh")
        .arg(bin)
        .args(plan.args())
        .arg("--mark-window")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cpus) = cpus {
        placement::pin_command(&mut command, cpus)?;
    }
    let mut child = command.spawn()?;
    let stdout = drain(child.stdout.take())?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("a pipe of the load generator is missing"))?;
    let marks = Arc::new(Mutex::new(Marks::default()));
    let seen = Arc::clone(&marks);
    scope.spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            let mut m = seen.lock().unwrap_or_else(|p| p.into_inner());
            match line.trim() {
                WINDOW_OPEN => m.open = Some(now),
                WINDOW_CLOSED => m.closed = Some(now),
                "" => continue,
                other => {
                    m.last_line = other.to_string();
                    continue;
                }
            }
            drop(m);
            mark(now);
        }
    });
    Ok(Remote {
        via: prefix.to_string(),
        connections: plan.connections,
        child,
        stdout,
        marks,
    })
}

/// The processes' reports as one: exact histogram merge, sums, the common window.
fn merge_via(
    plan: &LoadPlan,
    reports: Vec<(String, usize, LoadReport, Instant, Instant)>,
) -> io::Result<ViaRun> {
    let Some(first) = reports.first() else {
        return Err(io::Error::other("no load process was started"));
    };
    let from = reports.iter().map(|r| r.3).max().unwrap_or(first.3);
    let to = reports.iter().map(|r| r.4).min().unwrap_or(first.4);
    if to <= from {
        return Err(io::Error::other(format!(
            "the load processes' windows did not overlap (the last opened {:.0} ms after the first \
             closed): start them closer, or give a longer --duration",
            from.duration_since(to).as_secs_f64() * 1e3
        )));
    }
    let overlap = to.duration_since(from).as_secs_f64();
    let mut histograms = Vec::new();
    for (via, _, r, _, _) in &reports {
        let text = r.histogram.as_deref().ok_or_else(|| {
            io::Error::other(format!("load via '{via}' gave no histogram to merge"))
        })?;
        histograms.push(wire::decode(text)?);
    }
    let merged = wire::merge(&histograms)?;
    let sum = |f: &dyn Fn(&LoadReport) -> f64| reports.iter().map(|r| f(&r.2)).sum::<f64>();
    let mut errors = Errors::default();
    for (_, _, r, _, _) in &reports {
        errors.refused += r.errors.refused;
        errors.reset += r.errors.reset;
        errors.timed_out += r.errors.timed_out;
        errors.mismatch += r.errors.mismatch;
        errors.other += r.errors.other;
    }
    let requests_in_window = reports
        .iter()
        .map(|(_, _, r, open, closed)| {
            let own = closed.duration_since(*open).as_secs_f64();
            if own > 0.0 {
                r.requests as f64 * (overlap / own).min(1.0)
            } else {
                0.0
            }
        })
        .sum();
    let result = LoadReport {
        connections: plan.connections,
        rate: plan.rate,
        duration_s: overlap,
        requests: reports.iter().map(|r| r.2.requests).sum(),
        requests_per_sec: sum(&|r| r.requests_per_sec),
        errors,
        client_cpu_percent: reports
            .iter()
            .map(|r| r.2.client_cpu_percent)
            .fold(0.0, f64::max),
        client_cpu_user_s: sum(&|r| r.client_cpu_user_s),
        client_cpu_sys_s: sum(&|r| r.client_cpu_sys_s),
        latency_us: Latency::from_histogram(&merged),
        histogram: Some(wire::encode(&merged)?),
        ..first.2.clone()
    };
    let parts = reports
        .into_iter()
        .map(|(via, connections, r, _, _)| LoadPart {
            via,
            connections,
            requests: r.requests,
            requests_per_sec: r.requests_per_sec,
            latency_us: r.latency_us,
            client_cpu_percent: r.client_cpu_percent,
        })
        .collect();
    Ok(ViaRun {
        result,
        from,
        to,
        requests_in_window,
        parts,
    })
}
