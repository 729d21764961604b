//! The conformance suite: every case runs against every model in the registry, each model as a
//! separate `serve` process (forking a multi-threaded test binary is unsafe, and a model that
//! crashes must not take the suite with it). A model added to `variants::all()` is covered
//! without editing this file.
//!
//! Where a model cannot pass a case by design — the iterative server cannot serve a second
//! client while one is connected; a pool of N serves N at once — the case asserts that
//! documented limit instead of skipping: the extra client must wait, and must be served once a
//! slot frees up.
//!
//! Run one model's cases with `cargo test --test conformance -- epoll-lt/`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use server_models::harness::measure::TreeWatch;
use server_models::server::model::{Config, Model};
use server_models::server::protocol::Protocol;

/// Workers for the models that have a fixed number of them.
const WORKERS: usize = 4;

/// How long a client that must wait (a documented limit) is watched for an answer.
const MUST_WAIT: Duration = Duration::from_millis(800);

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
const BODY: &[u8] = b"Hello, world!";

/// One model and protocol under test.
#[derive(Clone, Copy)]
struct Case {
    model: &'static dyn Model,
    protocol: Protocol,
}

type Check = fn(Case) -> Result<(), Failed>;

/// Decides whether the bytes a client got back are everything it was owed.
type ReplyCheck = Box<dyn Fn(&[u8]) -> bool>;

/// Every case: its name, the protocols it applies to, and the check.
const CASES: &[(&str, &[Protocol], Check)] = &[
    (
        "small_messages",
        &[Protocol::Echo, Protocol::Http],
        small_messages,
    ),
    (
        "large_message_while_sending",
        &[Protocol::Echo],
        large_message_while_sending,
    ),
    ("half_close", &[Protocol::Echo, Protocol::Http], half_close),
    (
        "two_hundred_clients",
        &[Protocol::Echo, Protocol::Http],
        two_hundred_clients,
    ),
    (
        "clients_at_once",
        &[Protocol::Echo, Protocol::Http],
        clients_at_once,
    ),
    (
        "reset_mid_stream",
        &[Protocol::Echo, Protocol::Http],
        reset_mid_stream,
    ),
    (
        "slow_reader",
        &[Protocol::Echo, Protocol::Http],
        slow_reader,
    ),
    (
        "idle_connections",
        &[Protocol::Echo, Protocol::Http],
        idle_connections,
    ),
    ("sigterm", &[Protocol::Echo, Protocol::Http], sigterm),
    ("http_pipelining", &[Protocol::Http], http_pipelining),
    ("http_malformed", &[Protocol::Http], http_malformed),
    (
        "http_oversized_headers",
        &[Protocol::Http],
        http_oversized_headers,
    ),
    (
        "http_connection_close",
        &[Protocol::Http],
        http_connection_close,
    ),
    (
        "fifteen_hundred_clients",
        &[Protocol::Echo],
        fifteen_hundred_clients,
    ),
    ("out_of_descriptors", &[Protocol::Echo], out_of_descriptors),
    ("idle_timeout", &[Protocol::Echo], idle_timeout),
];

fn main() {
    let args = Arguments::from_args();
    // 1 500 clients at once need more descriptors than the usual soft limit of 1 024; the
    // servers started from here inherit the raised limit too.
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

    /// How many clients the model serves at once under the suite's configuration.
    fn limit(self) -> Option<usize> {
        let config = Config {
            workers: WORKERS,
            ..Config::default()
        };
        self.model.concurrency().limit(&config)
    }

    /// One request and its reply on `s`, checked.
    fn exchange(self, s: &mut TcpStream, seed: u8) -> Result<(), Failed> {
        match self.protocol {
            Protocol::Echo => {
                let msg = pattern(64 + seed as usize, seed);
                check(
                    echo_exchange(s, &msg)? == msg,
                    "echo reply differs from the message",
                )
            }
            Protocol::Http => {
                s.write_all(GET)?;
                let (status, head, body) = read_http_response(s)?;
                check(
                    status == 200 && body == BODY,
                    format!("unexpected response {head:?} {body:?}"),
                )
            }
        }
    }

    /// Whether a new client gets an answer within `within` (it must connect either way: the
    /// kernel completes the handshake before any accept).
    fn answered_within(
        self,
        server: &ServerProcess,
        within: Duration,
    ) -> Result<(TcpStream, bool), Failed> {
        let mut s = connect(server.addr())?;
        s.write_all(match self.protocol {
            Protocol::Echo => b"ping",
            Protocol::Http => GET,
        })?;
        s.set_read_timeout(Some(within))?;
        let mut byte = [0u8; 1];
        let answered = match s.read(&mut byte) {
            Ok(n) => n == 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok((s, answered))
    }

    /// With `held` connections occupying every slot of a limited model, a new client must wait
    /// (the documented limit), and must be served once one of them leaves.
    fn assert_waits_for_slot(
        self,
        server: &ServerProcess,
        mut held: Vec<TcpStream>,
        limit: usize,
    ) -> Result<(), Failed> {
        let (mut waiting, answered) = self.answered_within(server, MUST_WAIT)?;
        check(
            !answered,
            format!(
                "{} serves at most {limit} client(s) at once by design, yet client {} was answered",
                self.model.name(),
                limit + 1
            ),
        )?;
        drop(held.pop());
        let mut rest = [0u8; 64];
        let first = waiting.read(&mut rest)?;
        check(
            first > 0,
            "the waiting client got EOF instead of service once a slot freed",
        )?;
        Ok(())
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

/// Small messages come back exactly; HTTP keep-alive answers request after request.
fn small_messages(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let mut s = connect(server.addr())?;
    match case.protocol {
        Protocol::Echo => {
            for (i, len) in [1, 7, 64, 1000, 4096, 65536].into_iter().enumerate() {
                let msg = pattern(len, i as u8);
                check(
                    echo_exchange(&mut s, &msg)? == msg,
                    format!("{len}-byte message not echoed exactly"),
                )?;
            }
        }
        Protocol::Http => {
            for i in 0..5 {
                case.exchange(&mut s, i)?;
            }
        }
    }
    Ok(())
}

/// One 8 MiB message is echoed intact while the client is still sending it: the server must
/// cope with partial writes and a peer whose window fills.
fn large_message_while_sending(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let s = connect(server.addr())?;
    let msg = pattern(8 << 20, 42);
    let mut writer = s.try_clone()?;
    let to_send = msg.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let mut back = vec![0; msg.len()];
    (&s).read_exact(&mut back)?;
    sender.join().map_err(|_| "sender panicked")??;
    check(back == msg, "8 MiB message came back altered")
}

/// The client sends, then shuts down its writing side (半关闭): every byte (or reply) still comes
/// back, then EOF.
fn half_close(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let mut s = connect(server.addr())?;
    let (sent, expect): (Vec<u8>, ReplyCheck) = match case.protocol {
        Protocol::Echo => {
            let msg = pattern(256 * 1024, 7);
            (msg.clone(), Box::new(move |b: &[u8]| b == msg))
        }
        Protocol::Http => (
            GET.repeat(3),
            Box::new(|b: &[u8]| b.windows(BODY.len()).filter(|w| *w == BODY).count() == 3),
        ),
    };
    let mut writer = s.try_clone()?;
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let back = read_to_close(&mut s)?;
    sender.join().map_err(|_| "sender panicked")??;
    check(
        expect(&back),
        format!(
            "after half-close got {} bytes, not everything owed",
            back.len()
        ),
    )
}

/// 200 clients connect at once, each makes three requests and leaves; every one is served
/// (one at a time, for the models that serve one at a time).
fn two_hundred_clients(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let addr = server.addr();
    let clients: Vec<_> = (0..200u8)
        .map(|i| {
            std::thread::spawn(move || -> Result<(), Failed> {
                let mut s = connect(addr)?;
                for j in 0..3 {
                    case.exchange(&mut s, i.wrapping_add(j))?;
                }
                Ok(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for c in clients {
        if let Err(e) = c.join().map_err(|_| Failed::from("client panicked"))? {
            failures.push(format!("{e:?}"));
        }
    }
    check(
        failures.is_empty(),
        format!(
            "{} of 200 clients failed: {:?}",
            failures.len(),
            failures.first()
        ),
    )
}

/// Many clients connected at the same time are all served while all stay connected. A model
/// with a limit serves exactly that many, and the next waits for a free slot.
fn clients_at_once(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let n = case.limit().unwrap_or(50);
    let mut held = Vec::new();
    for i in 0..n {
        let mut s = connect(server.addr())?;
        case.exchange(&mut s, i as u8)?;
        held.push(s);
    }
    // All of them again, while all are connected.
    for (i, s) in held.iter_mut().enumerate() {
        case.exchange(s, i as u8)?;
    }
    match case.limit() {
        Some(limit) => case.assert_waits_for_slot(&server, held, limit),
        None => Ok(()),
    }
}

/// Clients that vanish with an RST mid-stream (SO_LINGER 0, then close) do not disturb the
/// server: it goes on serving the next client.
fn reset_mid_stream(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    for i in 0..5u8 {
        let s = connect(server.addr())?;
        let partial = match case.protocol {
            Protocol::Echo => pattern(1 << 20, i),
            Protocol::Http => b"GET / HTTP/1.1\r\nHost: half-a-req".to_vec(),
        };
        s.set_nonblocking(true)?;
        let _ = (&s).write(&partial);
        reset(&s)?;
    }
    let mut s = connect(server.addr())?;
    case.exchange(&mut s, 9)?;
    check(
        !server.has_exited(),
        "the server exited after clients reset",
    )
}

/// Closes `s` with an RST instead of a FIN.
fn reset(s: &TcpStream) -> Result<(), Failed> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::Linger, &linger)?;
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

/// A client that sends and never reads fills its socket buffers; then the server must stop
/// reading it rather than buffer its replies without bound, and must go on serving others.
fn slow_reader(case: Case) -> Result<(), Failed> {
    const OUT_CAP: usize = 64 * 1024;
    let server = case.start(&["--out-cap", &OUT_CAP.to_string()])?;
    // Let the server settle before taking its memory baseline.
    let mut probe = connect(server.addr())?;
    case.exchange(&mut probe, 1)?;
    drop(probe);
    let before = pss(&server)?;

    let hog = connect(server.addr())?;
    hog.set_nonblocking(true)?;
    let chunk = match case.protocol {
        Protocol::Echo => pattern(64 * 1024, 3),
        Protocol::Http => GET.repeat(2048),
    };
    let (mut written, mut stalled_since) = (0usize, Instant::now());
    while written < 48 << 20 && stalled_since.elapsed() < Duration::from_millis(1000) {
        match (&hog).write(&chunk) {
            Ok(n) => {
                written += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let grown = pss(&server)?.saturating_sub(before);
    check(
        grown < 8 << 20,
        format!(
            "server memory grew {} KiB while a client that never reads sent {} KiB (cap {} KiB)",
            grown >> 10,
            written >> 10,
            OUT_CAP >> 10
        ),
    )?;
    match case.limit() {
        Some(1) => case.assert_waits_for_slot(&server, vec![hog], 1),
        _ => {
            let mut other = connect(server.addr())?;
            case.exchange(&mut other, 2)
        }
    }
}

/// Idle connections do not stop a new client from being served (up to a limited model's
/// limit; at the limit the new client waits, as documented).
fn idle_connections(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let idle_count = case.limit().map_or(100, |l| l.saturating_sub(1));
    let mut idle = Vec::new();
    for _ in 0..idle_count {
        idle.push(connect(server.addr())?);
    }
    // Give a model that accepts lazily the chance to be stuck on them.
    std::thread::sleep(Duration::from_millis(100));
    let mut s = connect(server.addr())?;
    case.exchange(&mut s, 5)?;
    if let Some(limit) = case.limit() {
        // One more idle connection fills the last slot: the next client must wait.
        drop(s);
        idle.push(connect(server.addr())?);
        std::thread::sleep(Duration::from_millis(100));
        return case.assert_waits_for_slot(&server, idle, limit);
    }
    Ok(())
}

/// SIGTERM with clients connected: exit 0 within 5 s, every connection closed, no process of
/// the server's tree left behind.
fn sigterm(case: Case) -> Result<(), Failed> {
    let mut server = case.start(&[])?;
    let n = case.limit().unwrap_or(3).min(3);
    let mut clients = Vec::new();
    for i in 0..n {
        let mut s = connect(server.addr())?;
        case.exchange(&mut s, i as u8)?;
        clients.push(s);
    }
    // One client in the accept queue or just accepted, never served.
    clients.push(connect(server.addr())?);
    std::thread::sleep(Duration::from_millis(100));
    let tree = tree(&server)?;
    let code = server.terminate(Duration::from_secs(5));
    check(
        code == Some(0),
        format!(
            "exit status {code:?} after SIGTERM (want 0 within 5 s); log:\n{}",
            server.log_tail()
        ),
    )?;
    // Everyone it forked is gone too (children are reparented and reaped once they exit).
    let deadline = Instant::now() + Duration::from_secs(2);
    while tree.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = tree.iter().filter(|&&p| alive(p)).collect();
    check(
        left.is_empty(),
        format!("processes left after shutdown: {left:?}"),
    )?;
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        read_to_close(&mut c).map_err(|e| format!("a client's connection was not closed: {e}"))?;
    }
    Ok(())
}

/// Sixteen requests in one write get sixteen answers, in order.
fn http_pipelining(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let mut s = connect(server.addr())?;
    s.write_all(&GET.repeat(16))?;
    for i in 0..16 {
        let (status, _, body) = read_http_response(&mut s)?;
        check(
            status == 200 && body == BODY,
            format!("pipelined answer {i} wrong"),
        )?;
    }
    case.exchange(&mut s, 0)
}

/// A malformed request gets 400 and a close — and the server goes on serving others.
fn http_malformed(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    for bad in [
        &b"BLAH\x01 / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/7.7\r\n\r\n",
    ] {
        let mut s = connect(server.addr())?;
        s.write_all(bad)?;
        let all = read_to_close(&mut s)?;
        check(
            all.starts_with(b"HTTP/1.1 400 "),
            format!(
                "malformed request answered {:?}",
                String::from_utf8_lossy(&all)
            ),
        )?;
    }
    let mut s = connect(server.addr())?;
    case.exchange(&mut s, 0)
}

/// Headers over 16 KiB get 431 and a close.
fn http_oversized_headers(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    let mut s = connect(server.addr())?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    // The server may close before reading it all: a reset while writing is fine.
    let _ = s.write_all(req.as_bytes());
    let all = read_to_close(&mut s)?;
    check(
        all.starts_with(b"HTTP/1.1 431 "),
        format!(
            "oversized head answered {:?}",
            String::from_utf8_lossy(&all[..all.len().min(80)])
        ),
    )
}

/// `Connection: close` and HTTP/1.0 are answered, then the server closes.
fn http_connection_close(case: Case) -> Result<(), Failed> {
    let server = case.start(&[])?;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut s = connect(server.addr())?;
        s.write_all(req)?;
        let all = read_to_close(&mut s)?;
        check(
            all.starts_with(b"HTTP/1.1 200 OK") && all.ends_with(BODY),
            format!("answer {:?}", String::from_utf8_lossy(&all)),
        )?;
    }
    Ok(())
}

/// 1 500 clients connected at once, each sending before any reads. A model that can watch
/// descriptors only below a limit (select: FD_SETSIZE) serves the clients under it, closes the
/// others with one log line per episode rather than one per client, and goes on serving; a model
/// with a fixed number of slots serves that many and the next waits; every other model serves
/// all 1 500 while all stay connected.
fn fifteen_hundred_clients(case: Case) -> Result<(), Failed> {
    const N: usize = 1500;
    let server = case.start(&[])?;
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(connect(server.addr()).map_err(|e| {
            format!(
                "connect failed after {} clients (is RLIMIT_NOFILE >= 1 600?): {e}",
                clients.len()
            )
        })?);
    }
    if let Some(limit) = case.limit() {
        for (i, c) in clients.iter_mut().take(limit).enumerate() {
            case.exchange(c, i as u8)?;
        }
        // Client limit+1 has been in the queue all along; it is served once the others leave.
        let mut rest = clients.split_off(limit);
        let waiting = &mut rest[0];
        waiting.write_all(b"ping")?;
        waiting.set_read_timeout(Some(MUST_WAIT))?;
        let mut byte = [0u8; 4];
        check(
            matches!(
                waiting.read(&mut byte),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            ),
            format!(
                "{} serves {limit} at once by design, yet client {} was answered",
                case.model.name(),
                limit + 1
            ),
        )?;
        waiting.set_read_timeout(Some(IO_TIMEOUT))?;
        clients.clear();
        waiting.read_exact(&mut byte)?;
        check(&byte == b"ping", "the waiting client got a wrong answer")?;
        drop(rest);
        return Ok(());
    }
    // All send, then all read: the server has every one of them to serve at once.
    let msg = |i: usize| pattern(32, i as u8);
    let mut open = vec![true; N];
    for (i, c) in clients.iter_mut().enumerate() {
        // A refused client's write may fail (reset) or succeed (before the reset arrives).
        open[i] = c.write_all(&msg(i)).is_ok();
    }
    let mut served = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut back = [0u8; 32];
        match c.read_exact(&mut back) {
            Ok(()) if open[i] && back[..] == msg(i)[..] => served.push(i),
            Ok(()) => return Err(format!("client {i} got a wrong reply").into()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "client {i} was neither served nor closed within {IO_TIMEOUT:?}"
                )
                .into());
            }
            Err(_) => {} // closed: refused
        }
    }
    let refused = N - served.len();
    check(
        !server.has_exited(),
        format!(
            "the server exited during the flood; log:\n{}",
            server.log_tail()
        ),
    )?;
    match case.model.fd_limit() {
        None => check(
            refused == 0,
            format!("{refused} of {N} clients were not served"),
        )?,
        Some(limit) => {
            check(
                !served.is_empty() && served.len() <= limit && refused > 0,
                format!(
                    "{} served and {refused} refused with a descriptor limit of {limit}",
                    served.len()
                ),
            )?;
            let lines = server.log_lines();
            check(
                lines < 10,
                format!(
                    "{lines} log lines for {refused} refusals: log once per episode, not per client"
                ),
            )?;
            // It keeps serving the clients it took.
            for &i in served.iter().take(50) {
                case.exchange(&mut clients[i], i as u8)?;
            }
        }
    }
    drop(clients);
    // Once they have left, new clients are served. The server notices the closes in its own
    // time, and until then a limited model may still refuse: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = connect(server.addr())
            .map_err(Failed::from)
            .and_then(|mut s| case.exchange(&mut s, 7));
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("no service after the 1 500 clients left: {e:?}").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The server runs with RLIMIT_NOFILE = 64 and 100 clients arrive: accept fails with EMFILE
/// while the queue stays full. The server must not crash, must not spin (a level-triggered
/// listener stays readable while accept fails: a loop that keeps watching it burns a CPU), and
/// must serve normally once the clients leave.
fn out_of_descriptors(case: Case) -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 100;
    /// The share of a spinning thread's CPU above which a server counts as spinning.
    const SPIN: f64 = 0.3;
    let workers = WORKERS.to_string();
    let server = start_with(
        case.model.name(),
        case.protocol,
        &["--workers", &workers],
        |cmd| {
            // SAFETY: between fork and exec the closure only calls setrlimit(2), which is
            // async-signal-safe, and allocates nothing.
            unsafe {
                cmd.pre_exec(|| Ok(setrlimit(Resource::RLIMIT_NOFILE, NOFILE, NOFILE)?));
            }
        },
    )?;
    let idle = cpu_share(&server, Duration::from_millis(500))?;

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = connect(server.addr())?;
        c.write_all(&pattern(32, i as u8))?;
        clients.push(c);
    }
    // Let it run into the limit, then watch it there.
    std::thread::sleep(Duration::from_millis(300));
    let at_limit = cpu_share(&server, Duration::from_secs(1))?;
    check(
        !server.has_exited(),
        format!(
            "the server exited at the descriptor limit; log:\n{}",
            server.log_tail()
        ),
    )?;
    // A model that already burns a CPU while idle (busy-poll, by design) cannot spin any
    // harder on one thread: for it only the rest is checked.
    check(
        idle >= SPIN || at_limit < SPIN,
        format!(
            "at the descriptor limit the server burnt {at_limit:.2} of what a spinning thread got \
             (idle: {idle:.2}): it spins"
        ),
    )?;
    // The first client is served whatever the model.
    let mut back = [0u8; 32];
    clients[0].read_exact(&mut back)?;
    check(
        back[..] == pattern(32, 0)[..],
        "the first client got a wrong reply",
    )?;
    drop(clients);

    // Normal service once they have left: several clients at once (up to a limited model's limit).
    let n = case.limit().unwrap_or(10).min(10);
    let mut fresh = Vec::new();
    for i in 0..n {
        let mut s = connect(server.addr())?;
        case.exchange(&mut s, i as u8)?;
        fresh.push(s);
    }
    for (i, s) in fresh.iter_mut().enumerate() {
        case.exchange(s, i as u8)?;
    }
    Ok(())
}

/// The CPU the server tree burns over `over`, as a share of what a thread of this process that
/// spins on purpose gets over the same window: near 1 for a server that spins, near 0 for one
/// that waits. A plain CPU-seconds-per-second figure would let a spinning server pass on a busy
/// machine, where it gets only a fraction of a CPU; the spinning thread gets the same fraction.
fn cpu_share(server: &ServerProcess, over: Duration) -> Result<f64, Failed> {
    use nix::time::{ClockId, clock_gettime};
    use std::sync::atomic::{AtomicBool, Ordering};
    let thread_cpu = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map_or(0.0, |t| Duration::from(t).as_secs_f64())
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let spinner = scope.spawn(|| {
            let start = thread_cpu();
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            thread_cpu() - start
        });
        let mut watch = TreeWatch::new(server.pid() as i32);
        let before = watch.sample();
        std::thread::sleep(over);
        let after = watch.sample();
        stop.store(true, Ordering::Relaxed);
        let reference = spinner.join().unwrap_or(0.0);
        let burnt = Duration::from_nanos(after?.cpu_ns - before?.cpu_ns).as_secs_f64();
        Ok(burnt / reference.max(0.01))
    })
}

/// The server tree's summed proportional set size, in bytes.
fn pss(server: &ServerProcess) -> Result<u64, Failed> {
    Ok(TreeWatch::new(server.pid() as i32).sample()?.memory.pss)
}

/// With `--idle-timeout 1`, a connection that sends nothing is closed — not before the timeout
/// — while one that exchanges a message every 100 ms stays open throughout. The active client
/// connects first, so that a timer that goes by arrival rather than by last activity misses the
/// idle one behind it. (A model serving one client at a time must meet the idle client first,
/// and serves the active one once the idle one has been closed.)
fn idle_timeout(case: Case) -> Result<(), Failed> {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let server = case.start(&["--idle-timeout", "1"])?;
    let mut active = None;
    if case.limit() != Some(1) {
        let mut s = connect(server.addr())?;
        case.exchange(&mut s, 0)?;
        active = Some(s);
    }
    let connected = Instant::now();
    let mut idle = connect(server.addr())?;
    let watcher = std::thread::spawn(move || {
        idle.set_read_timeout(Some(Duration::from_secs(10)))?;
        let closed = read_to_close(&mut idle);
        Ok::<_, std::io::Error>((closed, connected.elapsed()))
    });
    let mut active = match active {
        Some(s) => s,
        None => connect(server.addr())?,
    };
    let mut i = 0u8;
    while connected.elapsed() < TIMEOUT * 5 / 2 {
        case.exchange(&mut active, i)?;
        i = i.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (closed, after) = watcher.join().map_err(|_| "watcher panicked")??;
    check(
        closed.as_ref().is_ok_and(|b| b.is_empty()),
        format!("the idle connection was not closed: {closed:?}"),
    )?;
    check(
        after >= TIMEOUT * 9 / 10,
        format!("the idle connection was closed after {after:?}, before the {TIMEOUT:?} timeout"),
    )?;
    case.exchange(&mut active, i)
}
