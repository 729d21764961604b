//! The load generator: many client connections driving one server, closed or open loop, or
//! connection churn, with latency in an HDR histogram and errors counted by kind.
//!
//! - Closed loop (the default): every connection keeps one request outstanding and sends the
//!   next as soon as the reply is in. Throughput is what the server gives; latency is measured
//!   from the actual send.
//! - Open loop (`rate`): requests are due at fixed intervals on every connection, whatever the
//!   server does. Latency is measured from the *scheduled* send time, so a request that had to
//!   wait for a busy connection carries that wait: a stalled server shows in the percentiles
//!   instead of silently slowing the client down (no coordinated omission).
//! - Churn: connect, one request, close, as fast as possible on every slot — the client of
//!   Stevens' UNP ch. 30, where the cost of a thread or process per connection shows. Latency
//!   runs from the `connect` call to the complete reply.
//! - Pipelined (`pipeline` D > 1, closed loop): D requests in flight per connection, sent back
//!   to back, the replies checked in order; one client core then drives far more requests than
//!   one round trip at a time allows.
//!
//! Each thread owns a share of the connections on its own epoll instance (see `worker`); the
//! main thread only samples the process's CPU time at the edges of the measured window.
//!
//! The measured window starts after the warm-up and lasts `duration`; a request counts in it
//! if its reply completes inside it. Errors are counted over the whole run, warm-up included,
//! so that a server refusing connections at the start is never hidden.

mod reply;
pub mod wire;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::resource::{self, Resource};
use serde::{Deserialize, Serialize};

use crate::server::protocol::Protocol;

pub use reply::{Reply, ReplyCheck};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The server.
    pub addr: SocketAddr,
    /// What the connections speak.
    pub protocol: Protocol,
    /// Connections open at once (in churn mode, connection slots).
    pub connections: usize,
    /// The measured window.
    pub duration: Duration,
    /// Echo message size in bytes (HTTP sends `GET /` and ignores it).
    pub size: usize,
    /// Open loop: total requests per second across all connections. `None`: closed loop.
    pub rate: Option<f64>,
    /// Threads, each owning a share of the connections.
    pub threads: usize,
    /// Time before the measured window; `None` picks [`default_warmup`].
    pub warmup: Option<Duration>,
    /// Connect, one request, close, instead of keeping connections.
    pub churn: bool,
    /// How long a connect or a reply may take before it counts as timed out.
    pub timeout: Duration,
    /// Stop once this many requests have completed (no warm-up then; `duration` still bounds
    /// the run). For tests and benches that want exact counts.
    pub requests: Option<u64>,
    /// Say on stderr when the measured window opens and closes ([`WINDOW_OPEN`],
    /// [`WINDOW_CLOSED`]), so that a harness on another host, behind `ssh`, can sample the
    /// server at the window's edges.
    pub mark_window: bool,
    /// Requests in flight per connection (closed loop); 1 is one request at a time.
    pub pipeline: usize,
}

/// The stderr line `--mark-window` prints when the measured window opens.
pub const WINDOW_OPEN: &str = "server-models: load: window open";
/// The stderr line `--mark-window` prints when the measured window closes.
pub const WINDOW_CLOSED: &str = "server-models: load: window closed";

impl LoadOptions {
    /// Closed-loop options with the defaults of the command line: 64-byte messages, one
    /// thread, default warm-up, 5 s timeout.
    pub fn new(
        addr: SocketAddr,
        protocol: Protocol,
        connections: usize,
        duration: Duration,
    ) -> LoadOptions {
        LoadOptions {
            addr,
            protocol,
            connections,
            duration,
            size: 64,
            rate: None,
            threads: 1,
            warmup: None,
            churn: false,
            timeout: Duration::from_secs(5),
            requests: None,
            mark_window: false,
            pipeline: 1,
        }
    }

    /// The mode these options run in.
    pub fn mode(&self) -> Pacing {
        match (self.churn, self.rate) {
            (true, _) => Pacing::Churn,
            (false, Some(_)) => Pacing::Open,
            (false, None) => Pacing::Closed,
        }
    }

    /// The warm-up actually used.
    pub fn effective_warmup(&self) -> Duration {
        match (self.requests, self.warmup) {
            (Some(_), _) => Duration::ZERO,
            (None, Some(w)) => w,
            (None, None) => default_warmup(self.duration),
        }
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
        if self.connections == 0 {
            return bad("--connections must be at least 1");
        }
        if self.threads == 0 {
            return bad("--threads must be at least 1");
        }
        if self.protocol == Protocol::Echo && self.size == 0 {
            return bad("--size must be at least 1 byte");
        }
        if self.duration.is_zero() {
            return bad("--duration must be positive");
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be positive");
        }
        if self.pipeline == 0 {
            return bad("--pipeline must be at least 1");
        }
        if self.pipeline > 1 && (self.churn || self.rate.is_some()) {
            return bad(
                "--pipeline is for the closed loop: churn sends one request per connection, and \
                 the open loop sends each request when it is due",
            );
        }
        if let Some(rate) = self.rate {
            if self.churn {
                return bad("--rate and --churn do not combine: churn runs as fast as it can");
            }
            if !(rate.is_finite() && rate > 0.0) {
                return bad("--rate must be a positive number of requests per second");
            }
        }
        Ok(())
    }
}

/// The warm-up when none is given: 1 s, or a fifth of the run when that is shorter, so that a
/// short run is not mostly warm-up.
pub fn default_warmup(duration: Duration) -> Duration {
    Duration::from_secs(1).min(duration / 5)
}

/// How the requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// One request outstanding per connection, the next sent when the reply is in.
    Closed,
    /// Requests due at fixed intervals; latency from the scheduled time.
    Open,
    /// Connect, one request, close.
    Churn,
}

/// Errors by kind; each failed connect or request counts once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// The connect was refused (ECONNREFUSED: nothing listening, or the accept queue full with
    /// `tcp_abort_on_overflow`).
    pub refused: u64,
    /// The server dropped the connection: RST (ECONNRESET, EPIPE) or an early FIN.
    pub reset: u64,
    /// A connect or a reply took longer than the timeout.
    pub timed_out: u64,
    /// A reply that is not the right one: an echo byte changed, a non-2xx status, bytes unasked.
    pub mismatch: u64,
    /// Anything else (out of descriptors or local ports: EMFILE, EADDRNOTAVAIL ...).
    pub other: u64,
}

impl Errors {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.mismatch + self.other
    }

    fn add(&mut self, other: &Errors) {
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.mismatch += other.mismatch;
        self.other += other.other;
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds, in microseconds; all 0 when empty.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: round_to(h.mean() / 1000.0, 3),
        }
    }
}

/// The result of a run; `--json` prints it as one object (the schema is in README.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// What the connections spoke.
    pub protocol: Protocol,
    /// Connections (or churn slots).
    pub connections: usize,
    /// Echo message size; for HTTP, the size of the request sent.
    pub size: usize,
    /// closed, open or churn.
    pub mode: Pacing,
    /// The open-loop rate asked for, requests/s; `None` otherwise.
    pub rate: Option<f64>,
    /// Requests in flight per connection (1: no pipelining).
    #[serde(default = "one")]
    pub pipeline: usize,
    /// The measured window, seconds.
    pub duration_s: f64,
    /// Requests completed in the window (churn: connections that completed their request).
    pub requests: u64,
    /// `requests / duration_s`.
    pub requests_per_sec: f64,
    /// Errors over the whole run, warm-up included.
    pub errors: Errors,
    /// The load process's user+sys CPU over the window, in percent of one core.
    pub client_cpu_percent: f64,
    /// User CPU seconds over the window.
    pub client_cpu_user_s: f64,
    /// System CPU seconds over the window.
    pub client_cpu_sys_s: f64,
    /// Latency of the requests in the window.
    pub latency_us: Latency,
    /// The same requests' latency histogram, nanoseconds, as [`wire::encode`] writes it
    /// (base64 of HdrHistogram's V2 DEFLATE encoding), for an exact merge with other load
    /// processes' histograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// Open loop: the same requests' latency measured from when each was actually sent rather
    /// than when it was due — what a client that forgets its schedule reports (coordinated
    /// omission). `None` in the other modes, where the two are the same.
    #[serde(default)]
    pub latency_from_send_us: Option<Latency>,
}

fn one() -> usize {
    1
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match (self.mode, self.rate) {
            (Pacing::Open, Some(r)) => format!("open loop at {r} requests/s"),
            (Pacing::Closed, _) | (Pacing::Open, None) => "closed loop".to_string(),
            (Pacing::Churn, _) => "churn (connect, one request, close)".to_string(),
        };
        let pipelined = match self.pipeline {
            1 => String::new(),
            d => format!(", {d} pipelined per connection"),
        };
        writeln!(
            f,
            "{} x {} connections, {} bytes, {mode}{pipelined}, {:.2} s measured",
            self.protocol, self.connections, self.size, self.duration_s
        )?;
        writeln!(
            f,
            "  requests    {} ({:.1}/s)",
            self.requests, self.requests_per_sec
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let Some(l) = &self.latency_from_send_us {
            writeln!(
                f,
                "  from send   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (not from the schedule: hides a stall)",
                l.p50, l.p90, l.p99, l.p999, l.max
            )?;
        }
        let e = &self.errors;
        if e.total() == 0 {
            writeln!(f, "  errors      none")?;
        } else {
            writeln!(
                f,
                "  errors      refused {}, reset {}, timed out {}, mismatch {}, other {}",
                e.refused, e.reset, e.timed_out, e.mismatch, e.other
            )?;
        }
        let cpu_s = self.client_cpu_user_s + self.client_cpu_sys_s;
        let per_req = if self.requests > 0 {
            cpu_s * 1e6 / self.requests as f64
        } else {
            0.0
        };
        write!(
            f,
            "  client CPU  {:.1}% of one core (user {:.2} s, sys {:.2} s), {:.2} µs/request",
            self.client_cpu_percent, self.client_cpu_user_s, self.client_cpu_sys_s, per_req
        )
    }
}

/// Runs the load described by `opts` and reports on the measured window.
///
/// Every phase is bounded: connects and replies by `opts.timeout`, the whole run by warm-up +
/// duration. A server that refuses, resets or stalls shows in the errors, not in a hang.
pub fn run(opts: &LoadOptions) -> io::Result<LoadReport> {
    opts.validate()?;
    raise_nofile_limit();
    let threads = opts.threads.min(opts.connections);
    let requests_out = RequestStream::new(opts);
    let origin = Instant::now();
    let warmup = opts.effective_warmup();
    let window = worker::LoadWindow {
        origin,
        start: nanos(warmup),
        end: nanos(warmup + opts.duration),
    };

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let results = std::thread::scope(|scope| -> io::Result<Vec<worker::ThreadTally>> {
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let plan = worker::Plan {
                opts,
                requests_out: &requests_out,
                window,
                // Connections t, t+T, t+2T ... so every thread gets an even share.
                connections: (t..opts.connections).step_by(threads).collect(),
                requests: opts
                    .requests
                    .map(|n| n / threads as u64 + u64::from((t as u64) < n % threads as u64)),
            };
            let done = done_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn_scoped(scope, move || worker::run(plan, done));
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // The threads already started finish on their own within the run's bound.
                    return Err(e);
                }
            }
        }
        drop(done_tx);

        // Each load thread reads its own CPU at the window's edges; this one only says when
        // they are. A worker reports when its loop ends, before it closes its sockets, so
        // teardown stays outside the window.
        std::thread::sleep(
            window
                .start_instant()
                .saturating_duration_since(Instant::now()),
        );
        if opts.mark_window {
            eprintln!("{WINDOW_OPEN}");
        }
        let mut finished = 0;
        while finished < handles.len() {
            let left = window
                .end_instant()
                .saturating_duration_since(Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(_) => break,
            }
        }
        if opts.mark_window {
            eprintln!("{WINDOW_CLOSED}");
        }
        let mut outcomes = Vec::with_capacity(handles.len());
        for h in handles {
            match h.join() {
                Ok(outcome) => outcomes.push(outcome?),
                Err(_) => return Err(io::Error::other("a load thread panicked")),
            }
        }
        Ok(outcomes)
    })?;

    let (mut hist, mut from_send, mut requests, mut errors, mut last) = (
        worker::histogram(),
        worker::histogram(),
        0,
        Errors::default(),
        0u64,
    );
    let merge_error = |e| io::Error::other(format!("merging histograms: {e}"));
    for r in &results {
        hist.add(&r.histogram).map_err(merge_error)?;
        from_send.add(&r.from_send).map_err(merge_error)?;
        requests += r.requests;
        errors.add(&r.errors);
        last = last.max(r.last_done);
    }
    // A run that stops at a request count ends with its last reply, not at the deadline.
    let window_ns = match opts.requests {
        Some(_) if requests > 0 => last.saturating_sub(window.start).max(1),
        _ => window.end - window.start,
    };
    let duration_s = window_ns as f64 / 1e9;
    let user: f64 = results.iter().map(|r| r.cpu.user).sum();
    let sys: f64 = results.iter().map(|r| r.cpu.sys).sum();
    let cpu_window_s = match opts.requests {
        Some(_) => duration_s,
        None => opts.duration.as_secs_f64(),
    };
    Ok(LoadReport {
        protocol: opts.protocol,
        connections: opts.connections,
        size: requests_out.len(),
        mode: opts.mode(),
        rate: opts.rate,
        pipeline: opts.pipeline,
        duration_s,
        requests,
        requests_per_sec: round_to(requests as f64 / duration_s, 1),
        errors,
        client_cpu_percent: round_to((user + sys) / cpu_window_s * 100.0, 2),
        client_cpu_user_s: round_to(user, 6),
        client_cpu_sys_s: round_to(sys, 6),
        latency_us: Latency::from_histogram(&hist),
        histogram: Some(wire::encode(&hist)?),
        latency_from_send_us: (opts.mode() == Pacing::Open)
            .then(|| Latency::from_histogram(&from_send)),
    })
}

/// The bytes of one request: an echo message of `size` bytes (the first of the stream's
/// messages), or `GET /` with a Host header.
pub fn request_bytes(protocol: Protocol, addr: SocketAddr, size: usize) -> Vec<u8> {
    match protocol {
        Protocol::Echo => echo_message(size, 0),
        Protocol::Http => format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
    }
}

/// Echo message number `variant`: the letters from the variant-th on, repeating. A pattern that
/// is not all one byte, so a shifted or mixed-up reply does not match, and that differs from
/// one message to the next, so a reply out of order does not either.
fn echo_message(size: usize, variant: usize) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + ((i + variant) % 26) as u8)
        .collect()
}

/// The bytes a connection sends: request after request, back to back. Echo requests cycle
/// through distinct messages; HTTP requests are all `GET /`. The stream is kept one period
/// long and then some, so that what is to be written from any point is one slice.
pub(super) struct RequestStream {
    bytes: Vec<u8>,
    /// One request's length.
    len: usize,
    /// Distinct requests before the stream repeats.
    variants: usize,
}

impl RequestStream {
    /// Longest slice one `write` is handed (past one period).
    const MAX_WRITE: usize = 1 << 20;

    fn new(opts: &LoadOptions) -> RequestStream {
        let first = request_bytes(opts.protocol, opts.addr, opts.size);
        let len = first.len();
        let variants = match opts.protocol {
            Protocol::Http => 1,
            // Large messages cycle through two, to keep the stream small.
            Protocol::Echo if len * 26 > Self::MAX_WRITE => 2,
            Protocol::Echo => 26,
        };
        let extra = (opts.pipeline.max(1) * len).clamp(len, Self::MAX_WRITE.max(len));
        let period: Vec<u8> = (0..variants)
            .flat_map(|v| match opts.protocol {
                Protocol::Echo => echo_message(len, v),
                Protocol::Http => first.clone(),
            })
            .collect();
        let mut bytes = Vec::with_capacity(period.len() + extra);
        while bytes.len() < period.len() + extra {
            let want = (period.len() + extra - bytes.len()).min(period.len());
            bytes.extend_from_slice(&period[..want]);
        }
        RequestStream {
            bytes,
            len,
            variants,
        }
    }

    /// One request's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Request number `n` on a connection: what its reply must echo.
    pub(super) fn message(&self, n: u64) -> &[u8] {
        let at = (n % self.variants as u64) as usize * self.len;
        &self.bytes[at..at + self.len]
    }

    /// The stream's bytes from byte `offset` on, at most `max` of them.
    pub(super) fn bytes_at(&self, offset: u64, max: u64) -> &[u8] {
        let at = (offset % (self.variants * self.len) as u64) as usize;
        let n = (self.bytes.len() - at).min(usize::try_from(max).unwrap_or(usize::MAX));
        &self.bytes[at..at + n]
    }
}

/// Raises the soft limit on open descriptors to the hard limit, so that 10 000 connections
/// fit. Failing to raise it is not fatal: connects past the limit count as `other` errors.
fn raise_nofile_limit() {
    if let Ok((soft, hard)) = resource::getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = resource::setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Rounds to `digits` decimals, so the JSON shows 83.92, not 83.91572000000001.
fn round_to(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1.5` (seconds), `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use us, ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{s}' is not a duration (negative or too large)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read the way the command line writes them; nonsense is refused with a message.
    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    /// The default warm-up is 1 s, shrinking to a fifth of short runs; a request count has none.
    #[test]
    fn warmup_defaults() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let mut o = LoadOptions::new(addr, Protocol::Echo, 1, Duration::from_secs(10));
        assert_eq!(o.effective_warmup(), Duration::from_secs(1));
        o.duration = Duration::from_secs(2);
        assert_eq!(o.effective_warmup(), Duration::from_millis(400));
        o.requests = Some(10);
        assert_eq!(o.effective_warmup(), Duration::ZERO);
    }

    /// Contradictory or empty options are refused before anything connects.
    #[test]
    fn refuses_bad_options() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let base = LoadOptions::new(addr, Protocol::Echo, 1, Duration::from_secs(1));
        let mut bad = vec![];
        bad.push(LoadOptions {
            connections: 0,
            ..base.clone()
        });
        bad.push(LoadOptions {
            rate: Some(0.0),
            ..base.clone()
        });
        bad.push(LoadOptions {
            rate: Some(10.0),
            churn: true,
            ..base.clone()
        });
        bad.push(LoadOptions {
            size: 0,
            ..base.clone()
        });
        for o in bad {
            assert_eq!(
                run(&o).map(|_| ()).map_err(|e| e.kind()),
                Err(io::ErrorKind::InvalidInput),
                "{o:?}"
            );
        }
    }

    /// The request stream is request after request: each echo request differs from the one
    /// before it (so an out-of-order reply is caught), and the bytes from any offset are the
    /// stream's, across the point where it repeats.
    #[test]
    fn request_stream_is_requests_back_to_back() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let opts = LoadOptions {
            size: 5,
            pipeline: 8,
            ..LoadOptions::new(addr, Protocol::Echo, 1, Duration::from_secs(1))
        };
        let s = RequestStream::new(&opts);
        assert_eq!(s.len(), 5);
        assert_eq!(s.message(0), b"abcde");
        assert_eq!(s.message(1), b"bcdef");
        assert_ne!(s.message(0), s.message(1));
        assert_eq!(s.message(0), s.message(s.variants as u64));
        let want: Vec<u8> = (0..60u64).flat_map(|n| s.message(n).to_vec()).collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let left = (want.len() - got.len()) as u64;
            got.extend_from_slice(s.bytes_at(got.len() as u64, left.min(7)));
        }
        assert_eq!(got, want);
        assert!(
            s.bytes_at(3, 1000).len() >= 8 * 5,
            "a pipeline's worth in one slice"
        );

        let http = RequestStream::new(&LoadOptions::new(
            addr,
            Protocol::Http,
            1,
            Duration::from_secs(1),
        ));
        assert_eq!(http.message(0), http.message(1));
        assert!(http.message(0).starts_with(b"GET / HTTP/1.1\r\n"));
    }
}
