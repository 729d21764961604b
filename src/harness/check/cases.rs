//! What every server must do: the conformance cases.
//!
//! Where a server cannot pass a case by design — the iterative server cannot serve a second
//! client while one is connected; a pool of N serves N at once — the case asserts that
//! documented limit instead of skipping: the extra client must wait, and must be served once a
//! slot frees up. The limit comes from the registry for a model, and from `--concurrency` for
//! any other server (without it, none is assumed).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::client::{
    GET, connect, echo_exchange, explain, io_timeout, pattern, read_http_response, read_to_close,
    reset, timed_out,
};
use super::faults::tree_anon_pss;
use super::target::ServerOptions;
use super::{BOTH, Case, CaseError, CaseRun, ECHO, Group, HELLO, HTTP, ensure};
use crate::harness::measure::TreeWatch;
use crate::harness::spawn::ServerProcess;
use crate::server::protocol::Protocol;

/// How long a client that must wait (a documented limit) is watched for an answer.
const MUST_WAIT: Duration = Duration::from_millis(800);

const fn case(
    name: &'static str,
    protocols: &'static [Protocol],
    run: fn(&CaseRun) -> Result<(), CaseError>,
) -> Case {
    Case::new(name, protocols, Group::Conformance, run)
}

/// The conformance cases, in the order they are printed.
pub const CASES: &[Case] = &[
    case("small_messages", BOTH, small_messages),
    case(
        "large_message_while_sending",
        ECHO,
        large_message_while_sending,
    ),
    case("half_close", BOTH, half_close),
    case("two_hundred_clients", BOTH, two_hundred_clients),
    case("clients_at_once", BOTH, clients_at_once),
    case("reset_mid_stream", BOTH, reset_mid_stream),
    case("slow_reader", BOTH, slow_reader),
    case("idle_connections", BOTH, idle_connections),
    case("sigterm", BOTH, sigterm),
    case("http_pipelining", HTTP, http_pipelining),
    case("http_malformed", HTTP, http_malformed),
    case("http_oversized_headers", HTTP, http_oversized_headers),
    case("http_connection_close", HTTP, http_connection_close),
    case("fifteen_hundred_clients", ECHO, fifteen_hundred_clients),
    case("out_of_descriptors", ECHO, out_of_descriptors),
    case("idle_timeout", ECHO, idle_timeout),
    case("slowloris", HTTP, slowloris),
    case("http_body_limit", HTTP, http_body_limit),
    case("non_readers_held_to_cap", BOTH, non_readers_held_to_cap),
];

/// Decides whether the bytes a client got back are everything it was owed.
type Owed = Box<dyn Fn(&[u8]) -> bool>;

impl CaseRun<'_> {
    /// Whether a new client gets an answer within `within` (it must connect either way: the
    /// kernel completes the handshake before any accept).
    fn answered_within(
        &self,
        server: &ServerProcess,
        within: Duration,
    ) -> Result<(TcpStream, bool), CaseError> {
        let mut s = connect(server.addr())?;
        s.write_all(match self.protocol {
            Protocol::Echo => b"ping",
            Protocol::Http => GET,
        })?;
        s.set_read_timeout(Some(within))?;
        let mut byte = [0u8; 1];
        let answered = match s.read(&mut byte) {
            Ok(n) => n == 1,
            Err(e) if timed_out(&e) => false,
            Err(e) => return Err(e.into()),
        };
        s.set_read_timeout(Some(io_timeout()))?;
        Ok((s, answered))
    }

    /// With `held` connections occupying every slot of a limited server, a new client must
    /// wait (the documented limit), and must be served once one of them leaves.
    fn assert_waits_for_slot(
        &self,
        server: &ServerProcess,
        mut held: Vec<TcpStream>,
        limit: usize,
    ) -> Result<(), CaseError> {
        let (mut waiting, answered) = self.answered_within(server, MUST_WAIT)?;
        ensure(
            !answered,
            format!(
                "{} serves at most {limit} client(s) at once by design, yet client {} was answered",
                self.name(),
                limit + 1
            ),
        )?;
        drop(held.pop());
        let mut rest = [0u8; 64];
        let first = waiting.read(&mut rest)?;
        ensure(
            first > 0,
            "the waiting client got EOF instead of service once a slot freed",
        )
    }
}

/// Small messages come back exactly; HTTP keep-alive answers request after request.
fn small_messages(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let mut s = connect(server.addr())?;
    match run.protocol {
        Protocol::Echo => {
            for (i, len) in [1, 7, 64, 1000, 4096, 65536].into_iter().enumerate() {
                let msg = pattern(len, i as u8);
                ensure(
                    echo_exchange(&mut s, &msg)? == msg,
                    format!("{len}-byte message not echoed exactly"),
                )?;
            }
        }
        Protocol::Http => {
            for i in 0..5 {
                run.exchange(&mut s, i)?;
            }
        }
    }
    Ok(())
}

/// One 8 MiB message is echoed intact while the client is still sending it: the server must
/// cope with partial writes and a peer whose window fills.
fn large_message_while_sending(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let s = connect(server.addr())?;
    let msg = pattern(8 << 20, 42);
    let mut writer = s.try_clone()?;
    let to_send = msg.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let mut back = vec![0; msg.len()];
    (&s).read_exact(&mut back)?;
    sender.join().map_err(|_| "sender panicked")??;
    ensure(back == msg, "8 MiB message came back altered")
}

/// The client sends, then shuts down its writing side (半关闭): every byte (or reply) still comes
/// back, then EOF.
fn half_close(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let mut s = connect(server.addr())?;
    let (sent, expect): (Vec<u8>, Owed) = match run.protocol {
        Protocol::Echo => {
            let msg = pattern(256 * 1024, 7);
            (msg.clone(), Box::new(move |b: &[u8]| b == msg))
        }
        Protocol::Http => {
            // Three answers: the workbook's body three times, or (another server) three
            // status lines.
            let mark: &'static [u8] = match run.target.registry_model() {
                Some(_) => HELLO,
                None => b"HTTP/1.1 200 ",
            };
            (
                GET.repeat(3),
                Box::new(move |b: &[u8]| b.windows(mark.len()).filter(|w| *w == mark).count() == 3),
            )
        }
    };
    let mut writer = s.try_clone()?;
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let back = read_to_close(&mut s)
        .map_err(|e| format!("no EOF after the client's half-close: {}", explain(&e)))?;
    sender.join().map_err(|_| "sender panicked")??;
    ensure(
        expect(&back),
        format!(
            "after half-close got {} bytes, not everything owed",
            back.len()
        ),
    )
}

/// 200 clients connect at once, each makes three requests and leaves; every one is served
/// (one at a time, for the servers that serve one at a time).
fn two_hundred_clients(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let addr = server.addr();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..200u8)
            .map(|i| {
                scope.spawn(move || -> Result<(), CaseError> {
                    let mut s = connect(addr)?;
                    for j in 0..3 {
                        run.exchange(&mut s, i.wrapping_add(j))?;
                    }
                    Ok(())
                })
            })
            .collect();
        clients
            .into_iter()
            .filter_map(|c| match c.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:?}")),
                Err(_) => Some("client panicked".into()),
            })
            .collect()
    });
    ensure(
        failures.is_empty(),
        format!(
            "{} of 200 clients failed: {:?}",
            failures.len(),
            failures.first()
        ),
    )
}

/// Many clients connected at the same time are all served while all stay connected. A server
/// with a limit serves exactly that many, and the next waits for a free slot.
fn clients_at_once(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let n = run.limit().unwrap_or(50);
    let mut held = Vec::new();
    for i in 0..n {
        held.push(run.served_client(&server, i as u8)?);
    }
    // All of them again, while all are connected.
    for (i, s) in held.iter_mut().enumerate() {
        run.exchange(s, i as u8)?;
    }
    match run.limit() {
        Some(limit) => run.assert_waits_for_slot(&server, held, limit),
        None => Ok(()),
    }
}

/// Clients that vanish with an RST mid-stream (SO_LINGER 0, then close) do not disturb the
/// server: it goes on serving the next client.
fn reset_mid_stream(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    for i in 0..5u8 {
        let s = connect(server.addr())?;
        let partial = match run.protocol {
            Protocol::Echo => pattern(1 << 20, i),
            Protocol::Http => b"GET / HTTP/1.1\r\nHost: half-a-req".to_vec(),
        };
        s.set_nonblocking(true)?;
        let _ = (&s).write(&partial);
        reset(s)?;
    }
    run.served_client(&server, 9)?;
    ensure(
        !server.has_exited(),
        "the server exited after clients reset",
    )
}

/// A client that sends and never reads fills its socket buffers; then the server must stop
/// reading it rather than buffer its replies without bound, and must go on serving others.
fn slow_reader(run: &CaseRun) -> Result<(), CaseError> {
    const OUT_CAP: usize = 64 * 1024;
    let server = run.start_with(&ServerOptions {
        out_cap: Some(OUT_CAP),
        ..ServerOptions::default()
    })?;
    // Let the server settle before taking its memory baseline.
    drop(run.served_client(&server, 1)?);
    let before = pss(&server)?;

    let hog = connect(server.addr())?;
    hog.set_nonblocking(true)?;
    let chunk = match run.protocol {
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
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let grown = pss(&server)?.saturating_sub(before);
    ensure(
        grown < 8 << 20,
        format!(
            "server memory grew {} KiB while a client that never reads sent {} KiB (cap {} KiB)",
            grown >> 10,
            written >> 10,
            OUT_CAP >> 10
        ),
    )?;
    match run.limit() {
        Some(1) => run.assert_waits_for_slot(&server, vec![hog], 1),
        _ => run.served_client(&server, 2).map(drop),
    }
}

/// Idle connections do not stop a new client from being served (up to a limited server's
/// limit; at the limit the new client waits, as documented).
fn idle_connections(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let idle_count = run.limit().map_or(100, |l| l.saturating_sub(1));
    let mut idle = Vec::new();
    for _ in 0..idle_count {
        idle.push(connect(server.addr())?);
    }
    // Give a server that accepts lazily the chance to be stuck on them.
    std::thread::sleep(Duration::from_millis(100));
    let s = run.served_client(&server, 5)?;
    if let Some(limit) = run.limit() {
        // One more idle connection fills the last slot: the next client must wait.
        drop(s);
        idle.push(connect(server.addr())?);
        std::thread::sleep(Duration::from_millis(100));
        return run.assert_waits_for_slot(&server, idle, limit);
    }
    Ok(())
}

/// SIGTERM with clients connected: exit 0 within 5 s, every connection closed, no process of
/// the server's tree left behind.
fn sigterm(run: &CaseRun) -> Result<(), CaseError> {
    run.require_signals()?;
    let mut server = run.start()?;
    let n = run.limit().unwrap_or(3).min(3);
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(run.served_client(&server, i as u8)?);
    }
    // One client in the accept queue or just accepted, never served.
    clients.push(connect(server.addr())?);
    std::thread::sleep(Duration::from_millis(100));
    let tree = crate::harness::measure::procfs::tree(server.pid() as i32)?;
    shut_down_cleanly(&mut server, &tree)?;
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        read_to_close(&mut c).map_err(|e| match timed_out(&e) {
            true => "a client's connection was not closed within 5 s of the exit".to_string(),
            false => format!("a client's connection did not end cleanly: {e}"),
        })?;
    }
    Ok(())
}

/// Sends SIGTERM; the server must exit 0 within 5 s, and every process of `tree` (the server
/// and what it forked, read before the signal) must be gone within 2 s more.
pub(super) fn shut_down_cleanly(server: &mut ServerProcess, tree: &[i32]) -> Result<(), CaseError> {
    let code = server.terminate(Duration::from_secs(5));
    if code != Some(0) {
        let how = match (code, server.killed_by()) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(sig)) => format!("was killed by {sig} (no handler for it)"),
            (None, None) => "was still running 5 s later".to_string(),
        };
        return Err(format!(
            "after SIGTERM the server {how} (want exit 0 within 5 s); its last lines:\n{}",
            server.log_tail()
        )
        .into());
    }
    // Everyone it forked is gone too (children are reparented and reaped once they exit).
    let alive = |p: i32| crate::harness::measure::procfs::stat(p).is_ok_and(|s| s.state != 'Z');
    let deadline = Instant::now() + Duration::from_secs(2);
    while tree.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = tree.iter().filter(|&&p| alive(p)).collect();
    ensure(
        left.is_empty(),
        format!("processes left after shutdown: {left:?}"),
    )
}

/// Sixteen requests in one write get sixteen answers, in order.
fn http_pipelining(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let mut s = connect(server.addr())?;
    s.write_all(&GET.repeat(16))?;
    for i in 0..16 {
        let resp = read_http_response(&mut s)?;
        ensure(
            run.good_response(resp.status, &resp.body),
            format!("pipelined answer {i} wrong: {:?}", resp.head),
        )?;
    }
    run.exchange(&mut s, 0)
}

/// A malformed request gets 400 and a close — and the server goes on serving others.
fn http_malformed(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    for bad in [
        &b"BLAH\x01 / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
        b"GET / HTTP/7.7\r\nHost: t\r\n\r\n",
    ] {
        let mut s = connect(server.addr())?;
        s.write_all(bad)?;
        let all = read_to_close(&mut s).map_err(|e| {
            format!(
                "no close after {:?}: {}",
                String::from_utf8_lossy(bad),
                explain(&e)
            )
        })?;
        ensure(
            all.starts_with(b"HTTP/1.1 400 "),
            format!(
                "{:?} answered {:?}",
                String::from_utf8_lossy(bad),
                String::from_utf8_lossy(&all[..all.len().min(80)])
            ),
        )?;
    }
    run.served_client(&server, 0).map(drop)
}

/// Headers over 16 KiB get 431 and a close.
fn http_oversized_headers(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let mut s = connect(server.addr())?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    // The server may close before reading it all: a reset while writing is fine.
    let _ = s.write_all(req.as_bytes());
    let all = read_to_close(&mut s)
        .map_err(|e| format!("no close after a 20 KiB head: {}", explain(&e)))?;
    ensure(
        all.starts_with(b"HTTP/1.1 431 "),
        format!(
            "oversized head answered {:?}",
            String::from_utf8_lossy(&all[..all.len().min(80)])
        ),
    )
}

/// `Connection: close` and HTTP/1.0 are answered, then the server closes.
fn http_connection_close(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nHost: t\r\n\r\n",
    ] {
        let mut s = connect(server.addr())?;
        s.write_all(req)?;
        let all = read_to_close(&mut s).map_err(|e| {
            format!(
                "no close after {:?}: {}",
                String::from_utf8_lossy(req).lines().next().unwrap_or(""),
                explain(&e)
            )
        })?;
        let hello = run.target.registry_model().is_none() || all.ends_with(HELLO);
        ensure(
            (all.starts_with(b"HTTP/1.1 200 ") || all.starts_with(b"HTTP/1.0 200 ")) && hello,
            format!("answer {:?}", String::from_utf8_lossy(&all)),
        )?;
    }
    Ok(())
}

/// 1 500 clients connected at once, each sending before any reads. A server that can watch
/// descriptors only below a limit (select: FD_SETSIZE) serves the clients under it, closes the
/// others with one log line per episode rather than one per client, and goes on serving; a
/// server with a fixed number of slots serves that many and the next waits; every other server
/// serves all 1 500 while all stay connected.
fn fifteen_hundred_clients(run: &CaseRun) -> Result<(), CaseError> {
    const N: usize = 1500;
    let server = run.start()?;
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(connect(server.addr()).map_err(|e| {
            format!(
                "connect failed after {} clients (is RLIMIT_NOFILE >= 1 600?): {e}",
                clients.len()
            )
        })?);
    }
    if let Some(limit) = run.limit() {
        for (i, c) in clients.iter_mut().take(limit).enumerate() {
            run.exchange(c, i as u8)?;
        }
        // Client limit+1 has been in the queue all along; it is served once the others leave.
        let mut rest = clients.split_off(limit);
        let waiting = &mut rest[0];
        waiting.write_all(b"ping")?;
        waiting.set_read_timeout(Some(MUST_WAIT))?;
        let mut byte = [0u8; 4];
        ensure(
            matches!(waiting.read(&mut byte), Err(e) if timed_out(&e)),
            format!(
                "{} serves {limit} at once by design, yet client {} was answered",
                run.name(),
                limit + 1
            ),
        )?;
        waiting.set_read_timeout(Some(io_timeout()))?;
        clients.clear();
        waiting.read_exact(&mut byte)?;
        ensure(&byte == b"ping", "the waiting client got a wrong answer")?;
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
            Err(e) if timed_out(&e) => {
                return Err(format!(
                    "client {i} was neither served nor closed within {:?}",
                    io_timeout()
                )
                .into());
            }
            Err(_) => {} // closed: refused
        }
    }
    let refused = N - served.len();
    ensure(
        !server.has_exited(),
        format!(
            "the server exited during the flood; log:\n{}",
            server.log_tail()
        ),
    )?;
    match run.known().fd_limit {
        None => ensure(
            refused == 0,
            format!("{refused} of {N} clients were not served"),
        )?,
        Some(limit) => {
            ensure(
                !served.is_empty() && served.len() <= limit && refused > 0,
                format!(
                    "{} served and {refused} refused with a descriptor limit of {limit}",
                    served.len()
                ),
            )?;
            let lines = server.log_lines();
            ensure(
                lines < 10,
                format!(
                    "{lines} log lines for {refused} refusals: log once per episode, not per client"
                ),
            )?;
            // It keeps serving the clients it took.
            for &i in served.iter().take(50) {
                run.exchange(&mut clients[i], i as u8)?;
            }
        }
    }
    drop(clients);
    // Once they have left, new clients are served. The server notices the closes in its own
    // time, and until then a limited server may still refuse: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match run.served_client(&server, 7) {
            Ok(_) => return Ok(()),
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
fn out_of_descriptors(run: &CaseRun) -> Result<(), CaseError> {
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 100;
    /// The share of a spinning thread's CPU above which a server counts as spinning.
    const SPIN: f64 = 0.3;
    let server = run.start_with(&ServerOptions {
        nofile: Some(NOFILE),
        ..ServerOptions::default()
    })?;
    let idle = cpu_share(&server, Duration::from_millis(500))?;

    // The first client is served before the others arrive, so that it holds a descriptor
    // whatever the model: with SO_REUSEPORT a client queued at a loop whose accept fails
    // waits until some descriptor is freed.
    let mut first = run.served_client(&server, 0)?;
    let mut clients = Vec::new();
    for i in 1..CLIENTS {
        let mut c = connect(server.addr())?;
        c.write_all(&pattern(32, i as u8))?;
        clients.push(c);
    }
    // Let it run into the limit, then watch it there.
    std::thread::sleep(Duration::from_millis(300));
    let at_limit = cpu_share(&server, Duration::from_secs(1))?;
    ensure(
        !server.has_exited(),
        format!(
            "the server exited at the descriptor limit; log:\n{}",
            server.log_tail()
        ),
    )?;
    // A server that already burns a CPU while idle (busy-poll, by design) cannot spin any
    // harder on one thread: for it only the rest is checked.
    ensure(
        idle >= SPIN || at_limit < SPIN,
        format!(
            "at the descriptor limit the server burnt {at_limit:.2} of what a spinning thread got \
             (idle: {idle:.2}): it spins"
        ),
    )?;
    // At the limit, the server still serves the client it holds.
    run.exchange(&mut first, 1)
        .map_err(|e| format!("at the descriptor limit a held client was not served: {e:?}"))?;
    drop((first, clients));

    // Normal service once they have left: several clients at once (up to a limited server's
    // limit).
    let n = run.limit().unwrap_or(10).min(10);
    let mut fresh = Vec::new();
    for i in 0..n {
        fresh.push(run.served_client(&server, i as u8)?);
    }
    for (i, s) in fresh.iter_mut().enumerate() {
        run.exchange(s, i as u8)?;
    }
    Ok(())
}

/// The CPU the server tree burns over `over`, as a share of what a thread of this process that
/// spins on purpose gets over the same window: near 1 for a server that spins, near 0 for one
/// that waits. A plain CPU-seconds-per-second figure would let a spinning server pass on a busy
/// machine, where it gets only a fraction of a CPU; the spinning thread gets the same fraction.
fn cpu_share(server: &ServerProcess, over: Duration) -> Result<f64, CaseError> {
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
pub(super) fn pss(server: &ServerProcess) -> Result<u64, CaseError> {
    Ok(TreeWatch::new(server.pid() as i32).sample()?.memory.pss)
}

/// With an idle timeout (1 s for a model), a connection that sends nothing is closed — not
/// before the timeout — while one that exchanges a message every 100 ms stays open throughout.
/// The active client connects first, so that a timer that goes by arrival rather than by last
/// activity misses the idle one behind it. (A server serving one client at a time must meet
/// the idle client first, and serves the active one once the idle one has been closed.)
fn idle_timeout(run: &CaseRun) -> Result<(), CaseError> {
    let timeout = run.require_idle_timeout()?;
    let server = run.start_with(&ServerOptions {
        idle_timeout: true,
        ..ServerOptions::default()
    })?;
    let mut active = None;
    if run.limit() != Some(1) {
        active = Some(run.served_client(&server, 0)?);
    }
    let connected = Instant::now();
    let mut idle = connect(server.addr())?;
    let watcher = std::thread::spawn(move || {
        idle.set_read_timeout(Some(timeout * 10))?;
        let closed = read_to_close(&mut idle);
        Ok::<_, io::Error>((closed, connected.elapsed()))
    });
    let mut active = match active {
        Some(s) => s,
        None => connect(server.addr())?,
    };
    let mut i = 0u8;
    while connected.elapsed() < timeout * 5 / 2 {
        run.exchange(&mut active, i)?;
        i = i.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (closed, after) = watcher.join().map_err(|_| "watcher panicked")??;
    ensure(
        closed.as_ref().is_ok_and(|b| b.is_empty()),
        format!("the idle connection was not closed: {closed:?}"),
    )?;
    ensure(
        after >= timeout * 9 / 10,
        format!("the idle connection was closed after {after:?}, before the {timeout:?} timeout"),
    )?;
    run.exchange(&mut active, i)
}

/// Clients that send a request head a byte every 200 ms — never idle for a 1 s idle timeout —
/// are answered 408 and closed at the header deadline (1 s for a model): a deadline for the
/// whole head, not a timeout per read. Then a new client is served — in a pool, only once the
/// slow clients have given their workers back.
fn slowloris(run: &CaseRun) -> Result<(), CaseError> {
    let deadline = run.require_header_timeout()?;
    let server = run.start_with(&ServerOptions {
        idle_timeout: true,
        header_timeout: true,
        ..ServerOptions::default()
    })?;
    let patience = io_timeout().max(deadline * 5);
    let slow: Vec<_> = (0..run.limit().map_or(4, |l| l.min(4)))
        .map(|_| {
            let addr = server.addr();
            std::thread::spawn(move || -> Result<Vec<u8>, String> {
                let mut s = connect(addr).map_err(|e| explain(&e))?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
                    .map_err(|e| explain(&e))?;
                s.set_nonblocking(true).map_err(|e| explain(&e))?;
                let started = Instant::now();
                let (mut got, mut buf) = (Vec::new(), [0u8; 1024]);
                while started.elapsed() < patience {
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(got),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(got),
                        Err(e) => return Err(explain(&e)),
                    }
                    // One more byte of a header line; a server that closed may refuse it.
                    let _ = s.write(b"X");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(format!("still open after {patience:?}"))
            })
        })
        .collect();
    for (i, client) in slow.into_iter().enumerate() {
        let got = client
            .join()
            .map_err(|_| "a slow client panicked")?
            .map_err(|e| format!("slow client {i}: {e}"))?;
        ensure(
            got.starts_with(b"HTTP/1.1 408 "),
            format!(
                "slow client {i} got {:?} instead of a 408",
                String::from_utf8_lossy(&got)
            ),
        )?;
    }
    run.served_client(&server, 1).map(drop)
}

/// With `--out-cap 16384` (a model), clients that pipeline requests or echo bytes and never
/// read grow the server's anonymous memory by at most a small multiple of the cap plus one
/// read each, over what the same clients cost while idle: the cap holds per connection.
///
/// Anonymous memory (`Pss_Anon`), because the buffers are there: a busy connection also runs
/// code an idle one did not, and the binary's text pages it faults in are file pages. And after
/// a warm-up that pushes 8 MiB through the server, so that a pool it fills lazily (io-uring's
/// provided buffers) is resident before the baseline: a fixed pool is not buffering.
fn non_readers_held_to_cap(run: &CaseRun) -> Result<(), CaseError> {
    const OUT_CAP: usize = 16 * 1024;
    const READ: usize = 16 * 1024; // a model's read size (Config::read_chunk)
    // Room for a buffer's doubling (a Vec's capacity can be twice its length), on the output
    // and on the input held for the session, and for the allocator's rounding.
    const BOUND: usize = 4 * (OUT_CAP + READ);
    if run.target.registry_model().is_none() {
        return Err(CaseError::not_applicable(
            "needs a server started with a known output cap (a model: --out-cap)",
        ));
    }
    let server = run.start_with(&ServerOptions {
        out_cap: Some(OUT_CAP),
        ..ServerOptions::default()
    })?;
    warm_up(run, &server)?;
    let n = run.limit().map_or(16, |l| l.min(16));
    let mut clients = Vec::new();
    for i in 0..n {
        let s = run.served_client(&server, i as u8)?;
        s.set_nonblocking(true)?;
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let root = server.pid() as i32;
    let before = tree_anon_pss(root)?;
    let chunk = match run.protocol {
        Protocol::Echo => pattern(64 * 1024, 7),
        Protocol::Http => GET.repeat(2048),
    };
    // Every client pushes until the server has taken nothing for half a second (its socket
    // buffers full, the model not reading), or 16 MiB each.
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("client {i}: {}", explain(&e)).into()),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let grown = tree_anon_pss(root)?.saturating_sub(before) as usize;
    ensure(
        grown / n <= BOUND,
        format!(
            "{n} clients that never read (each sent {} KiB) grew the server's anonymous memory \
             by {} KiB, {} KiB each; the cap is {} KiB, so at most {} KiB each was expected",
            (written.iter().sum::<usize>() / n) >> 10,
            grown >> 10,
            (grown / n) >> 10,
            OUT_CAP >> 10,
            BOUND >> 10
        ),
    )
}

/// Pushes 8 MiB through the server on one connection, reading every reply, then closes it (a
/// server that serves one client at a time is free again).
fn warm_up(run: &CaseRun, server: &ServerProcess) -> Result<(), CaseError> {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
    let mut s = connect(server.addr())?;
    let (chunk, reply_len) = match run.protocol {
        Protocol::Echo => (pattern(64 * 1024, 9), 64 * 1024),
        Protocol::Http => (GET.repeat(256), 256 * OK.len()),
    };
    let mut buf = vec![0u8; reply_len];
    for _ in 0..(8 << 20) / chunk.len() {
        s.write_all(&chunk)?;
        s.read_exact(&mut buf)?;
    }
    Ok(())
}

/// With `--max-body 10` (a model), a request announcing 10 bytes of body is served, the body
/// skipped, and the connection kept; one announcing 11 is answered 413 at once — from its head,
/// without waiting for the body — and closed.
fn http_body_limit(run: &CaseRun) -> Result<(), CaseError> {
    if run.target.registry_model().is_none() {
        return Err(CaseError::not_applicable(
            "needs a server started with a known body limit (a model: --max-body)",
        ));
    }
    let server = run.start_with(&ServerOptions {
        max_body: Some(10),
        ..ServerOptions::default()
    })?;
    let mut s = connect(server.addr())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n0123456789")?;
    let ok = read_http_response(&mut s)?;
    ensure(
        ok.status == 200,
        format!("a 10-byte body under a 10-byte limit got {}", ok.status),
    )?;
    run.exchange(&mut s, 1)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n")?;
    let refused = read_http_response(&mut s)?;
    ensure(
        refused.status == 413,
        format!(
            "an 11-byte body over a 10-byte limit got {}",
            refused.status
        ),
    )?;
    let rest = read_to_close(&mut s)?;
    ensure(
        rest.is_empty(),
        format!("{} bytes after the 413 instead of a close", rest.len()),
    )
}
