//! The load generator against small servers whose behaviour is known: exact counts, corrupted
//! replies, resets, refusals, stalls and timeouts each show where they must.
//!
//! The in-test servers run on 127.0.0.1:0 with a thread per connection; every run is bounded by
//! a request count or a duration of well under a second or two.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use server_models::harness::load::{self, LoadOptions, LoadReport, Pacing};
use server_models::harness::spawn::ServerProcess;
use server_models::server::protocol::Protocol;

/// What an in-test echo server does with each 64-byte message.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Echo it.
    Echo,
    /// Echo it, with one byte flipped in every n-th reply (counted over the whole server).
    CorruptEvery(u64),
    /// Read it, then close with an RST.
    Reset,
    /// Read it and never answer.
    Silent,
    /// Echo, but hold reply number `at` (counted from 1) back for `stall`.
    StallOnce { at: u64, stall: Duration },
    /// Read two messages, echo them in the wrong order.
    SwapPairs,
}

const SIZE: usize = 64;

struct TestServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    corrupted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let served = Arc::new(AtomicU64::new(0));
        let corrupted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c, st) = (served.clone(), corrupted.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (s, c) = (s.clone(), c.clone());
                std::thread::spawn(move || serve(stream, behaviour, &s, &c));
            }
        });
        TestServer {
            addr,
            served,
            corrupted,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the acceptor
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Serves one connection until the client closes (or resets).
fn serve(mut stream: TcpStream, behaviour: Behaviour, served: &AtomicU64, corrupted: &AtomicU64) {
    let mut msg = [0u8; SIZE];
    if let Behaviour::SwapPairs = behaviour {
        let mut second = [0u8; SIZE];
        while stream.read_exact(&mut msg).is_ok() && stream.read_exact(&mut second).is_ok() {
            served.fetch_add(2, Ordering::SeqCst);
            if stream.write_all(&second).is_err() || stream.write_all(&msg).is_err() {
                return;
            }
        }
        return;
    }
    while stream.read_exact(&mut msg).is_ok() {
        match behaviour {
            Behaviour::Reset => {
                let _ = socket_linger_zero(&stream);
                return;
            }
            Behaviour::Silent => continue,
            _ => {}
        }
        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
        match behaviour {
            Behaviour::CorruptEvery(k) if n.is_multiple_of(k) => {
                msg[SIZE / 2] ^= 0x20;
                corrupted.fetch_add(1, Ordering::SeqCst);
            }
            Behaviour::StallOnce { at, stall } if n == at => std::thread::sleep(stall),
            _ => {}
        }
        if stream.write_all(&msg).is_err() {
            return;
        }
    }
}

/// Sets SO_LINGER 0, so that dropping the socket sends an RST.
fn socket_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream, sockopt::Linger, &linger)?;
    Ok(())
}

fn opts(addr: SocketAddr, connections: usize, duration_ms: u64) -> LoadOptions {
    LoadOptions {
        warmup: Some(Duration::ZERO),
        ..LoadOptions::new(
            addr,
            Protocol::Echo,
            connections,
            Duration::from_millis(duration_ms),
        )
    }
}

fn run(o: &LoadOptions) -> LoadReport {
    load::run(o).expect("load runs")
}

/// With a request count, exactly that many requests complete, and the server saw exactly that
/// many: none lost, none counted twice, across threads and connections.
#[test]
fn counts_requests_exactly() {
    let server = TestServer::start(Behaviour::Echo);
    let o = LoadOptions {
        requests: Some(1000),
        threads: 2,
        ..opts(server.addr, 4, 10_000)
    };
    let r = run(&o);
    assert_eq!(r.requests, 1000);
    assert_eq!(server.served.load(Ordering::SeqCst), 1000);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.mode, Pacing::Closed);
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.p50 <= r.latency_us.max);
}

/// In a timed run the client's count trails the server's by at most the requests in flight at
/// the end: one per connection.
#[test]
fn timed_run_agrees_with_the_server() {
    let server = TestServer::start(Behaviour::Echo);
    let r = run(&opts(server.addr, 3, 300));
    let served = server.served.load(Ordering::SeqCst);
    assert!(r.requests > 0);
    assert!(
        served >= r.requests && served <= r.requests + 3,
        "server {served}, client {}",
        r.requests
    );
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
}

/// A reply with one byte changed is a mismatch, each one counted, and not a request.
#[test]
fn corrupted_replies_are_mismatches() {
    let server = TestServer::start(Behaviour::CorruptEvery(10));
    let r = run(&LoadOptions {
        requests: Some(100),
        ..opts(server.addr, 1, 10_000)
    });
    let corrupted = server.corrupted.load(Ordering::SeqCst);
    assert_eq!(r.requests, 100);
    assert!(corrupted >= 10);
    assert_eq!(r.errors.mismatch, corrupted);
    assert_eq!(r.errors.total(), corrupted, "{:?}", r.errors);
}

/// A server that resets every connection shows resets and no requests.
#[test]
fn resets_are_counted() {
    let server = TestServer::start(Behaviour::Reset);
    let r = run(&opts(server.addr, 2, 300));
    assert_eq!(r.requests, 0);
    assert!(r.errors.reset >= 1, "{:?}", r.errors);
    assert_eq!(
        r.errors.refused + r.errors.mismatch + r.errors.timed_out,
        0,
        "{:?}",
        r.errors
    );
}

/// Nothing listening: connects are refused, and counted, without hanging.
#[test]
fn refused_against_a_closed_port() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address")
    }; // dropped: nothing listens there now
    let r = run(&opts(port, 2, 200));
    assert_eq!(r.requests, 0);
    assert!(r.errors.refused >= 1, "{:?}", r.errors);
    assert_eq!(r.errors.reset + r.errors.mismatch, 0, "{:?}", r.errors);
}

/// A server that never answers: the request times out, counted as such.
#[test]
fn silent_server_times_out() {
    let server = TestServer::start(Behaviour::Silent);
    let o = LoadOptions {
        timeout: Duration::from_millis(150),
        ..opts(server.addr, 2, 500)
    };
    let r = run(&o);
    assert_eq!(r.requests, 0);
    assert!(r.errors.timed_out >= 2, "{:?}", r.errors);
}

/// Open loop, no coordinated omission: while the server holds one reply back for 300 ms,
/// requests keep falling due every 10 ms; each waits, and its latency counts from when it was
/// due. So request k after the stalled one has latency of at least 300 - 10k ms, and among the
/// ≤ 101 requests of this run the 99th percentile (the second slowest) is at least 290 ms. A
/// client that timed from its actual send would show one slow request and a p99 of microseconds.
#[test]
fn open_loop_latency_includes_the_stall() {
    let stall = Duration::from_millis(300);
    let server = TestServer::start(Behaviour::StallOnce { at: 20, stall });
    let o = LoadOptions {
        rate: Some(100.0),
        ..opts(server.addr, 1, 1000)
    };
    let r = run(&o);
    assert_eq!(r.mode, Pacing::Open);
    assert!(
        r.requests <= 101,
        "an open loop never sends ahead of its schedule: {}",
        r.requests
    );
    assert!(
        r.latency_us.max >= stall.as_micros() as f64,
        "{:?}",
        r.latency_us
    );
    let interval_us = 10_000.0;
    assert!(
        r.latency_us.p99 >= stall.as_micros() as f64 - interval_us,
        "{:?}",
        r.latency_us
    );
    // Timed from the actual send, only the stalled request itself is slow; the ones that
    // waited behind it went out late and came back at once, so the percentiles hide the stall.
    let sent = r
        .latency_from_send_us
        .expect("open loop times from the send too");
    assert!(sent.max >= stall.as_micros() as f64, "{sent:?}");
    assert!(sent.p99 < sent.max, "{sent:?}");
    assert!(
        sent.p99 < r.latency_us.p99,
        "{sent:?} against {:?}",
        r.latency_us
    );
    // Waiting for due times must sleep, not spin: 100 requests/s is nearly idle.
    assert!(
        r.client_cpu_percent < 50.0,
        "client CPU {}%",
        r.client_cpu_percent
    );
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
}

/// Churn against a real model: every request on its own connection, each counted once.
#[test]
fn churn_against_a_model() {
    let mut server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_server-models")),
        "thread-per-conn",
        Protocol::Echo,
        &[],
    )
    .expect("server starts");
    let o = LoadOptions {
        churn: true,
        requests: Some(200),
        ..opts(server.addr(), 4, 10_000)
    };
    let r = run(&o);
    assert_eq!(r.mode, Pacing::Churn);
    assert_eq!(r.requests, 200);
    assert_eq!(r.errors.total(), 0, "{:?}\n{}", r.errors, server.log_tail());
    assert!(
        server.stop().expect("server stops").success(),
        "{}",
        server.log_tail()
    );
}

/// `load --json` prints exactly one JSON object with every documented key, and the HTTP
/// client counts a real model's responses exactly.
#[test]
fn json_output_has_every_key() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_server-models"));
    let server =
        ServerProcess::start(bin, "thread-per-conn", Protocol::Http, &[]).expect("server starts");
    let out = std::process::Command::new(bin)
        .args([
            "load",
            "--addr",
            &server.addr().to_string(),
            "--protocol",
            "http",
        ])
        .args([
            "--connections",
            "2",
            "--requests",
            "300",
            "--duration",
            "10s",
            "--json",
        ])
        .output()
        .expect("load runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let top = [
        "protocol",
        "connections",
        "size",
        "mode",
        "rate",
        "pipeline",
        "duration_s",
        "requests",
        "requests_per_sec",
        "errors",
        "client_cpu_percent",
        "client_cpu_user_s",
        "client_cpu_sys_s",
        "latency_us",
        "histogram",
        "latency_from_send_us",
    ];
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), top.len(), "no undocumented keys: {stdout}");
    for k in top {
        assert!(obj.contains_key(k), "missing {k}: {stdout}");
    }
    for k in ["refused", "reset", "timed_out", "mismatch", "other"] {
        assert_eq!(v["errors"][k], 0, "errors.{k}: {stdout}");
    }
    for k in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            v["latency_us"][k].as_f64().is_some_and(|x| x > 0.0),
            "latency_us.{k}: {stdout}"
        );
    }
    assert_eq!(v["protocol"], "http");
    assert_eq!(v["mode"], "closed");
    assert!(v["rate"].is_null());
    assert_eq!(v["pipeline"], 1);
    assert!(
        v["latency_from_send_us"].is_null(),
        "closed loop: no second figure"
    );
    assert_eq!(v["requests"], 300);
    let report: LoadReport = serde_json::from_str(&stdout).expect("parses back into LoadReport");
    assert_eq!(report.requests, 300);
    // The histogram holds exactly the requests counted, and gives the same percentiles.
    let h = load::wire::decode(report.histogram.as_deref().expect("a histogram"))
        .expect("the histogram decodes");
    assert_eq!(h.len(), 300);
    assert_eq!(load::Latency::from_histogram(&h), report.latency_us);
}

/// Pipelined, with a request count: exactly that many requests complete and the server read
/// exactly that many messages, D at a time on every connection, across threads.
#[test]
fn counts_pipelined_requests_exactly() {
    let server = TestServer::start(Behaviour::Echo);
    let o = LoadOptions {
        requests: Some(1000),
        threads: 2,
        pipeline: 8,
        ..opts(server.addr, 4, 10_000)
    };
    let r = run(&o);
    assert_eq!(r.requests, 1000);
    assert_eq!(r.pipeline, 8);
    assert_eq!(server.served.load(Ordering::SeqCst), 1000);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
}

/// Pipelined replies are checked in order: a server that answers each pair of requests in the
/// wrong order is caught on every connection (each echo request differs from the next), and
/// nothing it answers counts.
#[test]
fn pipelined_replies_out_of_order_are_mismatches() {
    let server = TestServer::start(Behaviour::SwapPairs);
    let r = run(&LoadOptions {
        pipeline: 2,
        ..opts(server.addr, 2, 300)
    });
    assert_eq!(r.requests, 0, "{r:?}");
    assert!(r.errors.mismatch >= 2, "{:?}", r.errors);
    assert_eq!(r.errors.total(), r.errors.mismatch, "{:?}", r.errors);
}

/// `--pipeline` is for the closed loop: with churn or a rate it is refused before anything
/// connects.
#[test]
fn pipeline_is_closed_loop_only() {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
    for o in [
        LoadOptions {
            pipeline: 2,
            churn: true,
            ..opts(addr, 1, 100)
        },
        LoadOptions {
            pipeline: 2,
            rate: Some(100.0),
            ..opts(addr, 1, 100)
        },
        LoadOptions {
            pipeline: 0,
            ..opts(addr, 1, 100)
        },
    ] {
        let err = load::run(&o).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

/// Pipelined HTTP and echo against real models: every response framed and counted, none lost,
/// none extra, with 16 requests in flight per connection.
#[test]
fn pipelined_against_models() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_server-models"));
    for (model, protocol) in [
        ("epoll-lt", Protocol::Http),
        ("thread-per-conn", Protocol::Echo),
    ] {
        let mut server = ServerProcess::start(bin, model, protocol, &[]).expect("server starts");
        let o = LoadOptions {
            protocol,
            requests: Some(5000),
            pipeline: 16,
            ..opts(server.addr(), 3, 10_000)
        };
        let r = run(&o);
        assert_eq!(r.requests, 5000, "{model} {protocol}");
        assert_eq!(
            r.errors.total(),
            0,
            "{model}: {:?}\n{}",
            r.errors,
            server.log_tail()
        );
        assert!(
            server.stop().expect("server stops").success(),
            "{}",
            server.log_tail()
        );
    }
}
