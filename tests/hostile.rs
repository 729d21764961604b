//! Hostile clients and a stopping server, against every model (each as its own `serve`
//! process, as in the conformance suite):
//! - a request head sent a byte at a time (slowloris) is cut at the header deadline with a 408,
//!   even though the client is never idle, and the server serves others afterwards;
//! - clients that pipeline and never read cost the server at most its output cap plus one read
//!   each, measured as the growth of its PSS;
//! - a shutdown under load closes every connection with a FIN, so that no reply already written
//!   is destroyed by an RST.
//!
//! Run one model's cases with `cargo test --test hostile -- io-uring/`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use server_models::server::model::{Config, Model};
use server_models::server::protocol::Protocol;

/// Workers for the models that have a fixed number of them.
const WORKERS: usize = 4;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

#[derive(Clone, Copy)]
struct Case {
    model: &'static dyn Model,
    protocol: Protocol,
}

type Check = fn(Case) -> Result<(), Failed>;

const CASES: &[(&str, &[Protocol], Check)] = &[
    (
        "slowloris_cut_at_header_deadline",
        &[Protocol::Http],
        slowloris,
    ),
    (
        "non_readers_held_to_out_cap",
        &[Protocol::Echo, Protocol::Http],
        non_readers,
    ),
    (
        "fin_at_shutdown_under_load",
        &[Protocol::Echo],
        fin_at_shutdown,
    ),
];

fn main() {
    let args = Arguments::from_args();
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let mut trials = Vec::new();
    for &model in server_models::variants::all() {
        for &(name, protocols, check) in CASES {
            for &protocol in protocols {
                let case = Case { model, protocol };
                trials.push(Trial::test(
                    format!("{}/{}/{}", model.name(), protocol, name),
                    move || check(case),
                ));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

impl Case {
    fn start(self, extra: &[&str]) -> Result<ServerProcess, Failed> {
        let workers = WORKERS.to_string();
        let mut args = vec!["--workers", workers.as_str()];
        args.extend_from_slice(extra);
        Ok(start(self.model.name(), self.protocol, &args)?)
    }

    /// How many clients the model serves at once under these tests' configuration.
    fn limit(self) -> Option<usize> {
        let config = Config {
            workers: WORKERS,
            ..Config::default()
        };
        self.model.concurrency().limit(&config)
    }

    /// `wanted` clients, or as many as the model serves at once if that is fewer.
    fn clients(self, wanted: usize) -> usize {
        self.limit().map_or(wanted, |l| l.min(wanted))
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

/// Clients that send a request head one byte every 200 ms — never idle for the 1 s idle
/// timeout — are answered 408 and closed at the 1 s header deadline; then a new client is
/// served (in a pool, only once the slow clients have given their workers back).
fn slowloris(case: Case) -> Result<(), Failed> {
    let server = case.start(&["--header-timeout", "1", "--idle-timeout", "1"])?;
    let slow: Vec<_> = (0..case.clients(4))
        .map(|_| {
            let addr = server.addr();
            std::thread::spawn(move || -> Result<Vec<u8>, String> {
                let mut s = connect(addr).map_err(|e| e.to_string())?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
                    .map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                let started = Instant::now();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while started.elapsed() < IO_TIMEOUT {
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(got),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
                        Err(e) => return Err(e.to_string()),
                    }
                    // One more header byte; a server that closed may refuse it (EPIPE).
                    let _ = s.write(b"X");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(format!("still open after {IO_TIMEOUT:?}"))
            })
        })
        .collect();
    for (i, client) in slow.into_iter().enumerate() {
        let got = client
            .join()
            .map_err(|_| "a slow client panicked")?
            .map_err(|e| format!("slow client {i}: {e}"))?;
        check(
            got.starts_with(b"HTTP/1.1 408 "),
            format!(
                "slow client {i} got {:?} instead of a 408",
                String::from_utf8_lossy(&got)
            ),
        )?;
    }
    let mut s = connect(server.addr())?;
    s.write_all(GET)?;
    let (status, _, _) = read_http_response(&mut s)?;
    check(
        status == 200,
        format!("a client after the slow ones got {status}"),
    )
}

/// With `--out-cap 16384`, clients that pipeline requests (or echo bytes) and never read grow
/// the server's anonymous memory by at most a small multiple of the cap plus one read each, over
/// what the same clients cost while idle: the cap holds per connection, whatever the model.
///
/// Anonymous memory (`Pss_Anon`), because the buffers are there: a busy connection also runs
/// code an idle one did not, and the binary's text pages it faults in are file pages, not
/// buffers. And after a warm-up that pushes a few MiB through the server first, so that a pool
/// it fills lazily (io-uring's provided buffers) is resident before the baseline: a fixed pool
/// is not per-connection buffering.
fn non_readers(case: Case) -> Result<(), Failed> {
    const OUT_CAP: usize = 16 * 1024;
    const READ: usize = 16 * 1024; // Config::read_chunk's default
    // Room for a Vec's doubling (a buffer's capacity can be twice its length) on both the
    // output and the input held for the session, and for allocator rounding.
    const BOUND: usize = 4 * (OUT_CAP + READ);
    let server = case.start(&["--out-cap", &OUT_CAP.to_string()])?;
    warm_up(case, &server)?;
    let n = case.clients(16);
    let mut clients = Vec::new();
    for i in 0..n {
        let mut s = connect(server.addr())?;
        one_exchange(case, &mut s, i as u8)?;
        s.set_nonblocking(true)?;
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = anon(&server)?;
    let chunk = match case.protocol {
        Protocol::Echo => pattern(64 * 1024, 7),
        Protocol::Http => GET.repeat(2048),
    };
    // Every client pushes until the server stops taking bytes (its socket buffers full and the
    // model not reading) for half a second, or 16 MiB each.
    let mut written = vec![0usize; n];
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < Duration::from_millis(500) {
        for (i, s) in clients.iter_mut().enumerate() {
            if written[i] >= 16 << 20 {
                continue;
            }
            match s.write(&chunk) {
                Ok(k) => {
                    written[i] += k;
                    last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("client {i}: {e}").into()),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let grown = anon(&server)?.saturating_sub(before) as usize;
    check(
        grown / n <= BOUND,
        format!(
            "{n} clients that never read (each sent {} KiB) grew the server by {} KiB, {} KiB \
             each; the cap is {} KiB, so at most {} KiB each was expected",
            (written.iter().sum::<usize>() / n) >> 10,
            grown >> 10,
            (grown / n) >> 10,
            OUT_CAP >> 10,
            BOUND >> 10
        ),
    )
}

/// Clients exchange echo messages in a closed loop; SIGTERM arrives meanwhile. Each client's
/// connection must end with a FIN (a read returning 0), not an RST, every byte it got must be a
/// prefix of what it sent, and the server must exit 0 within 5 s.
fn fin_at_shutdown(case: Case) -> Result<(), Failed> {
    let mut server = case.start(&[])?;
    let clients: Vec<_> = (0..case.clients(32))
        .map(|i| {
            let addr = server.addr();
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = connect(addr).map_err(|e| e.to_string())?;
                let msg = pattern(64, i as u8);
                let (mut sent, mut got) = (0usize, 0usize);
                let mut buf = [0u8; 64];
                loop {
                    // A failed write means the server closed: what is left to read tells how.
                    if got == sent
                        && let Ok(k) = s.write(&msg)
                    {
                        sent += k;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(k) => {
                            let at = got % msg.len();
                            if buf[..k] != msg.repeat(2)[at..at + k] {
                                return Err("a reply differs from the message".into());
                            }
                            got += k;
                        }
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                            return Err(format!("reset after {got} of {sent} bytes"));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let code = server.terminate(Duration::from_secs(5));
    for (i, client) in clients.into_iter().enumerate() {
        client
            .join()
            .map_err(|_| "a client panicked")?
            .map_err(|e| format!("client {i}: {e}"))?;
    }
    check(
        code == Some(0),
        format!("the server's exit code after SIGTERM: {code:?} (None: still running or killed)"),
    )
}

/// One request and its reply.
fn one_exchange(case: Case, s: &mut TcpStream, seed: u8) -> Result<(), Failed> {
    match case.protocol {
        Protocol::Echo => {
            let msg = pattern(64, seed);
            check(echo_exchange(s, &msg)? == msg, "echo reply differs")
        }
        Protocol::Http => {
            s.write_all(GET)?;
            let (status, _, _) = read_http_response(s)?;
            check(status == 200, format!("status {status}"))
        }
    }
}

/// Pushes 8 MiB through the server on one connection (a model that serves one client at a
/// time is then free again), reading every reply.
fn warm_up(case: Case, server: &ServerProcess) -> Result<(), Failed> {
    let mut s = connect(server.addr())?;
    let (chunk, reply_len) = match case.protocol {
        Protocol::Echo => (pattern(64 * 1024, 9), 64 * 1024),
        Protocol::Http => (GET.repeat(256), 256 * OK_LEN),
    };
    let mut buf = vec![0u8; reply_len];
    for _ in 0..(8 << 20) / chunk.len() {
        s.write_all(&chunk)?;
        s.read_exact(&mut buf)?;
    }
    Ok(())
}

/// The length of the answer to `GET` (the C reference server's bytes).
const OK_LEN: usize = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!".len();

/// The summed `Pss_Anon` of the server's process tree (`/proc/PID/smaps_rollup`, Linux 5.x).
fn anon(server: &ServerProcess) -> Result<u64, Failed> {
    let mut total = 0;
    for pid in tree(server)? {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue; // exited meanwhile
        };
        let kb = text
            .lines()
            .find_map(|l| l.strip_prefix("Pss_Anon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or("no Pss_Anon in smaps_rollup (Linux 5.x has it)")?;
        total += kb * 1024;
    }
    Ok(total)
}
