//! What every server must survive: the fault cases.
//!
//! - `worker_killed`: a worker process serving clients is killed with SIGKILL. Its clients see
//!   their connection end, every other client goes on being served, a new client is served (a
//!   pool whose other workers are all busy can serve it only with a replacement), the tree
//!   grows back to its size, and SIGTERM still exits 0 with nothing left. It applies to servers
//!   whose connections are held by child processes — found from the process tree, not from
//!   the name: a server of one process (its workers, if any, are threads) is skipped, saying so.
//! - `sigstop`, `sigstop_idle_timeout`: the whole server (its process group) is stopped for
//!   2 s with SIGSTOP while 20 connections each have messages in flight, then continued with
//!   SIGCONT; every byte must come back, in order, and every connection must end with the
//!   client's own close. With an idle timeout (1 s for a model) the stop outlasts it: a
//!   connection whose bytes are waiting in the kernel is not idle.
//! - `churn`: short connections, each one exchange, closed by the client alternately with a
//!   FIN and with an RST (SO_LINGER 0). After a warm-up the tree's descriptors and PSS are
//!   taken; after the counted connections the descriptors must be back to that count and the
//!   PSS within [`PSS_SLACK`] of it.
//! - `sigterm_busy`: SIGTERM while 1 000 connections are busy (each a closed loop of echoes or
//!   GETs): exit 0 within 5 s, every client sees its connection end (FIN or RST), and no
//!   process of the tree is left.
//! - `fin_at_shutdown`: the same with 100 connections, stricter about how they end: every
//!   connection the server has answered ends with a FIN after whole replies, never an RST
//!   (an RST discards what the client has not read yet, and tells it nothing of why).
//!   Connections still in the accept queue when the listener closes are reset by the kernel
//!   (`inet_csk_listen_stop` → `inet_child_forget` → `tcp_disconnect`,
//!   net/ipv4/inet_connection_sock.c), so only answered ones count.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::AddressFamily;

use super::cases::{pss, shut_down_cleanly};
use super::client::{Ending, GET, connect, io_timeout, pattern, read_to_end, reset};
use super::target::ServerOptions;
use super::{BOTH, Case, CaseError, CaseRun, ECHO, Group, ensure};
use crate::harness::load::{Reply, ReplyCheck};
use crate::harness::measure::procfs;
use crate::harness::spawn::ServerProcess;
use crate::server::protocol::Protocol;

/// How far the server tree's anonymous PSS may stay above its baseline after the counted
/// churn. The allocator keeps freed memory in its arenas and may split it differently from one
/// moment to the next (glibc does not return every freed page), so a few hundred KiB is no
/// leak. A leak of 100 bytes per connection over the full 20 000 is 2 MB and fails; over the
/// default 5 000 it is 500 KB and at the edge — which is why the full run exists.
///
/// The file-backed part of PSS is not held to it: the binary's pages are shared with every
/// other process running the same binary (the other cases' servers, run side by side), so it
/// grows when they exit, whatever this server does.
pub const PSS_SLACK: u64 = 512 * 1024;

const fn fault(
    name: &'static str,
    protocols: &'static [Protocol],
    run: fn(&CaseRun) -> Result<(), CaseError>,
) -> Case {
    Case::new(name, protocols, Group::Fault, run)
}

/// The fault cases, in the order they are printed.
pub const CASES: &[Case] = &[
    fault("worker_killed", BOTH, worker_killed),
    fault("sigstop", ECHO, sigstop),
    fault("sigstop_idle_timeout", ECHO, sigstop_idle_timeout),
    fault("churn", BOTH, churn),
    fault("sigterm_busy", BOTH, sigterm_busy),
    fault("fin_at_shutdown", BOTH, fin_at_shutdown),
];

/// The processes of the server's tree holding the server's end of each client's connection,
/// found by inode: the kernel's socket table (sock_diag) names the inode of the socket whose
/// ports are the client's, reversed; `/proc/PID/fd` says who holds it.
fn holders(server: &ServerProcess, clients: &[TcpStream]) -> io::Result<Vec<Vec<i32>>> {
    let port = server.addr().port();
    let mut sockets = crate::lab::diag::tcp_sockets(AddressFamily::Inet)?;
    // A server listening on [::] holds IPv4 clients in IPv6 sockets (v4-mapped addresses).
    sockets.extend(crate::lab::diag::tcp_sockets(AddressFamily::Inet6)?);
    let held: Vec<(i32, HashSet<u64>)> = procfs::tree(server.pid() as i32)?
        .into_iter()
        .filter_map(|pid| Some((pid, procfs::socket_inodes(pid).ok()?.into_iter().collect())))
        .collect();
    clients
        .iter()
        .map(|c| {
            let client_port = c.local_addr()?.port();
            let inode = sockets
                .iter()
                .find(|s| s.local.port() == port && s.remote.port() == client_port && s.inode != 0)
                .map(|s| u64::from(s.inode));
            Ok(match inode {
                Some(inode) => held
                    .iter()
                    .filter(|(_, inodes)| inodes.contains(&inode))
                    .map(|(pid, _)| *pid)
                    .collect(),
                None => Vec::new(),
            })
        })
        .collect()
}

/// Live processes of the tree other than its root.
fn workers(root: i32) -> io::Result<Vec<i32>> {
    Ok(procfs::tree(root)?
        .into_iter()
        .filter(|&p| p != root && procfs::stat(p).is_ok_and(|s| s.state != 'Z'))
        .collect())
}

/// A worker process serving clients is killed (SIGKILL): its clients see their connection
/// end, the others are served, a new client is served, the tree grows back, and SIGTERM still
/// exits 0 with no process left.
fn worker_killed(run: &CaseRun) -> Result<(), CaseError> {
    let mut server = run.start()?;
    let root = server.pid() as i32;
    let n = run.limit().unwrap_or(4).min(4);
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(run.served_client(&server, i as u8)?);
    }
    let before = workers(root)?;
    if before.is_empty() {
        let threads = procfs::stat(root).map_or(0, |s| s.num_threads);
        return Err(CaseError::not_applicable(format!(
            "one process ({threads} thread(s)) serving {n} clients: no worker process to kill"
        )));
    }
    let owners = holders(&server, &clients)?;
    // A client whose connection one worker alone holds: killing that worker must end it.
    let Some(victim) = owners.iter().find_map(|o| match o.as_slice() {
        [pid] if *pid != root => Some(*pid),
        _ => None,
    }) else {
        if let Some(shared) = owners
            .iter()
            .find(|o| o.iter().any(|&p| p != root) && o.len() > 1)
        {
            return Err(format!(
                "a client's connection is held open by several processes ({shared:?}): killing \
                 the worker serving it would not end it"
            )
            .into());
        }
        return Err(CaseError::not_applicable(format!(
            "{} child process(es), but the root process holds every client's connection",
            before.len()
        )));
    };
    let (ended, served): (Vec<usize>, Vec<usize>) =
        (0..clients.len()).partition(|&i| owners[i] == [victim]);
    // It is still ours: a descendant of the server this case started.
    ensure(
        workers(root)?.contains(&victim),
        "the chosen worker exited by itself",
    )?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL)?;

    let mut endings = Vec::new();
    for &i in &ended {
        let c = &mut clients[i];
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        // A request to a dead worker: the write may fail already (the kernel closed its socket).
        let _ = c.write_all(match run.protocol {
            Protocol::Echo => b"ping",
            Protocol::Http => GET,
        });
        match read_to_end(c) {
            Ok((_, ending)) => endings.push(ending),
            Err(e) => {
                return Err(format!(
                    "client {i}, served by the killed worker {victim}, saw no end of its \
                     connection: {}",
                    if super::client::timed_out(&e) {
                        "nothing within 5 s".to_string()
                    } else {
                        e.to_string()
                    }
                )
                .into());
            }
        }
    }
    for &i in &served {
        run.exchange(&mut clients[i], i as u8).map_err(|e| {
            format!("client {i}, not served by the killed worker, was not served after: {e:?}")
        })?;
    }
    // With every other worker of a pool still busy, only a replacement can serve this one.
    let fresh = run.served_client(&server, 99).map_err(|e| {
        format!("after worker {victim} was killed, a new client was not served: {e:?}")
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = workers(root)?;
    while now.len() < before.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = workers(root)?;
    }
    ensure(
        now.len() >= before.len() && !now.contains(&victim),
        format!(
            "{} worker processes before the kill, {} after (killed {victim}): not replaced",
            before.len(),
            now.len()
        ),
    )?;
    if run.known().signals {
        let tree = procfs::tree(root)?;
        shut_down_cleanly(&mut server, &tree)?;
    }
    drop((clients, fresh));
    Ok(())
}

/// Stopped for 2 s under echo load, then continued: every byte arrives, in order.
fn sigstop(run: &CaseRun) -> Result<(), CaseError> {
    stopped_under_load(run, None)
}

/// The same, with an idle timeout shorter than the stop.
fn sigstop_idle_timeout(run: &CaseRun) -> Result<(), CaseError> {
    let timeout = run.require_idle_timeout()?;
    stopped_under_load(run, Some(timeout))
}

/// What one connection of the stopped server got back.
struct StreamEnd {
    /// Bytes that came back matching what was sent, before anything else.
    matched: usize,
    /// Whether a byte came back that was not the next one sent.
    wrong: bool,
    /// How the connection ended, or why reading it failed.
    end: Result<Ending, String>,
}

fn stopped_under_load(run: &CaseRun, idle_timeout: Option<Duration>) -> Result<(), CaseError> {
    const CONNECTIONS: usize = 20;
    const CHUNK: usize = 512;
    const EVERY: Duration = Duration::from_millis(20);
    const LEAD: Duration = Duration::from_millis(300);
    let stop_for = idle_timeout.map_or(Duration::from_secs(2), |t| {
        (t * 2).max(Duration::from_secs(2))
    });
    let server = run.start_with(&ServerOptions {
        idle_timeout: idle_timeout.is_some(),
        ..ServerOptions::default()
    })?;
    let chunks = ((LEAD * 2 + stop_for).as_millis() / EVERY.as_millis()) as usize;
    let streams: Vec<Vec<u8>> = (0..CONNECTIONS)
        .map(|i| pattern(chunks * CHUNK, i as u8))
        .collect();
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let c = connect(server.addr())?;
        // The readers must outwait the stop, whatever wait the run was given.
        c.set_read_timeout(Some(io_timeout().max(stop_for + Duration::from_secs(5))))?;
        conns.push(c);
    }
    let ends: Vec<StreamEnd> = std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for (conn, stream) in conns.iter().zip(&streams) {
            let writer = conn;
            scope.spawn(move || {
                for chunk in stream.chunks(CHUNK) {
                    if (&*writer).write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(EVERY);
                }
                let _ = writer.shutdown(Shutdown::Write);
            });
            readers.push(scope.spawn(move || read_back(conn, stream)));
        }
        std::thread::sleep(LEAD);
        // Nothing between the two signals can fail: a stopped server must be continued.
        let stopped = server.signal_group(Signal::SIGSTOP);
        std::thread::sleep(stop_for);
        let continued = server.signal_group(Signal::SIGCONT);
        if let Err(e) = stopped.and(continued) {
            return vec![StreamEnd {
                matched: 0,
                wrong: false,
                end: Err(format!("signalling the server's process group: {e}")),
            }];
        }
        readers
            .into_iter()
            .map(|r| {
                r.join().unwrap_or(StreamEnd {
                    matched: 0,
                    wrong: false,
                    end: Err("reader panicked".into()),
                })
            })
            .collect()
    });
    let total = chunks * CHUNK;
    let bad: Vec<String> = ends
        .iter()
        .enumerate()
        .filter(|(_, e)| e.matched != total || e.wrong || e.end != Ok(Ending::Fin))
        .map(|(i, e)| {
            let how = match &e.end {
                _ if e.wrong => "then a wrong byte".to_string(),
                Ok(Ending::Fin) => "then EOF".to_string(),
                Ok(Ending::Reset) => "then an RST".to_string(),
                Err(why) => format!("then {why}"),
            };
            format!("connection {i}: {} of {total} bytes {how}", e.matched)
        })
        .collect();
    let timeout = idle_timeout.map_or(String::new(), |t| {
        format!(" (idle timeout {:.1} s)", t.as_secs_f64())
    });
    ensure(
        bad.is_empty(),
        format!(
            "stopped {:.1} s under load{timeout}: {} of {CONNECTIONS} connections did not get \
             every byte back: {}",
            stop_for.as_secs_f64(),
            bad.len(),
            bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ),
    )
}

/// Reads `conn` to its end, comparing against `sent` as the bytes come.
fn read_back(conn: &TcpStream, sent: &[u8]) -> StreamEnd {
    let mut matched = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match (&*conn).read(&mut buf) {
            Ok(0) => {
                return StreamEnd {
                    matched,
                    wrong: false,
                    end: Ok(Ending::Fin),
                };
            }
            Ok(n) => {
                let end = matched + n;
                if end > sent.len() || buf[..n] != sent[matched..end] {
                    let same = buf[..n]
                        .iter()
                        .zip(&sent[matched..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    return StreamEnd {
                        matched: matched + same,
                        wrong: true,
                        end: Ok(Ending::Fin),
                    };
                }
                matched = end;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return StreamEnd {
                    matched,
                    wrong: false,
                    end: Ok(Ending::Reset),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return StreamEnd {
                    matched,
                    wrong: false,
                    end: Err(match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                            "no end within {:?}",
                            conn.read_timeout().ok().flatten().unwrap_or_default()
                        ),
                        _ => e.to_string(),
                    }),
                };
            }
        }
    }
}

/// Short connections, FIN and RST closes mixed: descriptors and memory back where they were.
fn churn(run: &CaseRun) -> Result<(), CaseError> {
    let server = run.start()?;
    let root = server.pid() as i32;
    let (warmup, counted) = (run.scale.churn_warmup, run.scale.churn);
    open_and_close(run, &server, warmup)?;
    let (fds_before, _) = settled_descriptors(root, None)?;
    let (anon_before, pss_before) = (tree_anon_pss(root)?, pss(&server)?);
    open_and_close(run, &server, counted)?;
    let (fds_after, waited) = settled_descriptors(root, Some(fds_before))?;
    let (anon_after, pss_after) = (tree_anon_pss(root)?, pss(&server)?);
    ensure(
        fds_after <= fds_before,
        format!(
            "{fds_before} descriptors open in the server's tree after {warmup} connections of \
             warm-up, {fds_after} after {counted} more ({:.1} s later): {} left behind",
            waited.as_secs_f64(),
            fds_after.saturating_sub(fds_before)
        ),
    )?;
    ensure(
        anon_after <= anon_before + PSS_SLACK,
        format!(
            "anonymous PSS {} KiB after {warmup} connections of warm-up, {} KiB after {counted} \
             more: grew {} KiB, past the {} KiB slack (all of PSS: {} KiB, then {} KiB)",
            anon_before >> 10,
            anon_after >> 10,
            anon_after.saturating_sub(anon_before) >> 10,
            PSS_SLACK >> 10,
            pss_before >> 10,
            pss_after >> 10
        ),
    )?;
    run.served_client(&server, 3).map(drop)
}

/// The anonymous PSS of the tree, summed over its processes (see [`procfs::anon_pss`]).
pub(super) fn tree_anon_pss(root: i32) -> io::Result<u64> {
    Ok(procfs::tree(root)?
        .into_iter()
        .filter_map(|p| procfs::anon_pss(p).ok())
        .sum())
}

/// Opens `n` connections from 4 client threads, one exchange each, closing even ones with a FIN
/// and odd ones with an RST.
fn open_and_close(run: &CaseRun, server: &ServerProcess, n: usize) -> Result<(), CaseError> {
    const THREADS: usize = 4;
    let addr = server.addr();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || -> Result<(), String> {
                    for i in (t..n).step_by(THREADS) {
                        let mut s = connect_retrying(addr)
                            .map_err(|e| format!("connection {i}: connect: {e}"))?;
                        run.exchange(&mut s, i as u8)
                            .map_err(|e| format!("connection {i}: {e:?}"))?;
                        if i % 2 == 0 {
                            drop(s);
                        } else {
                            reset(s).map_err(|e| format!("connection {i}: SO_LINGER: {e}"))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|t| match t.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("client thread panicked".into()),
            })
            .collect()
    });
    ensure(
        failures.is_empty(),
        format!("churn of {n} connections failed: {}", failures.join("; ")),
    )
}

/// Connects, waiting out a moment without free local ports: the client's FIN-closed
/// connections sit in TIME_WAIT, and loopback reuses them only after a second
/// (`tcp_tw_reuse` = 2).
fn connect_retrying(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let mut tries = 0;
    loop {
        match connect(addr) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Descriptors open in the tree, summed over its processes.
fn tree_descriptors(root: i32) -> io::Result<usize> {
    Ok(procfs::tree(root)?
        .into_iter()
        .filter_map(|p| procfs::descriptor_count(p).ok())
        .sum())
}

/// The tree's descriptor count once it has settled: the same in three readings 100 ms apart,
/// or (with `target`) at or below `target`; at most 5 s. Returns the count and the wait.
fn settled_descriptors(root: i32, target: Option<usize>) -> io::Result<(usize, Duration)> {
    let start = Instant::now();
    let mut last = tree_descriptors(root)?;
    let mut same = 0;
    while start.elapsed() < Duration::from_secs(5) {
        if target.is_some_and(|t| last <= t) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let now = tree_descriptors(root)?;
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if target.is_none() && same >= 2 {
            break;
        }
    }
    Ok((last, start.elapsed()))
}

/// SIGTERM with 1 000 busy connections: exit 0 within 5 s, every client sees its connection
/// end, nothing left behind.
fn sigterm_busy(run: &CaseRun) -> Result<(), CaseError> {
    run.require_signals()?;
    let ends = busy_shutdown(run, 1000)?;
    let wrong = ends.iter().filter(|e| e.wrong).count();
    ensure(
        wrong == 0,
        format!("{wrong} of {} connections got a wrong reply", ends.len()),
    )?;
    let open: Vec<_> = ends
        .iter()
        .enumerate()
        .filter(|(_, e)| e.ending.is_none())
        .collect();
    ensure(
        open.is_empty(),
        format!(
            "{} of {} connections saw no end within 5 s of the server's exit (first: {})",
            open.len(),
            ends.len(),
            open.first().map_or(0, |(i, _)| *i)
        ),
    )
}

/// SIGTERM with 100 busy connections: every connection the server answered ends with a FIN
/// after whole replies.
fn fin_at_shutdown(run: &CaseRun) -> Result<(), CaseError> {
    run.require_signals()?;
    let ends = busy_shutdown(run, 1000)?;
    let answered: Vec<&BusyEnd> = ends.iter().filter(|e| e.replies > 0).collect();
    ensure(
        !answered.is_empty(),
        "no connection was answered before SIGTERM",
    )?;
    let reset = answered
        .iter()
        .filter(|e| e.ending == Some(Ending::Reset))
        .count();
    let torn = answered.iter().filter(|e| e.torn || e.wrong).count();
    let open = answered.iter().filter(|e| e.ending.is_none()).count();
    ensure(
        reset == 0 && torn == 0 && open == 0,
        format!(
            "of {} answered connections, {reset} ended with an RST, {torn} with a reply cut \
             short, {open} not at all (want a FIN after whole replies)",
            answered.len()
        ),
    )
}

/// How one busy connection ended.
#[derive(Clone, Copy, Debug)]
struct BusyEnd {
    /// Complete replies it got.
    replies: u64,
    /// How it ended; `None`: it did not, within 5 s of the server's exit.
    ending: Option<Ending>,
    /// It ended inside a reply (part of a reply, then the end).
    torn: bool,
    /// A reply was not what the request asked for.
    wrong: bool,
}

/// One connection of the busy load: a closed loop, one request outstanding at a time.
struct BusyConn {
    stream: TcpStream,
    reply: Reply,
    /// Bytes of the reply in progress.
    partial: usize,
    end: BusyEnd,
}

/// Opens `n` connections, keeps them busy, sends SIGTERM 300 ms later, and drives them until
/// every one has ended or 5 s after the server's exit. The server must exit 0 within 5 s and
/// leave no process of its tree behind. Returns how each connection ended.
fn busy_shutdown(run: &CaseRun, n: usize) -> Result<Vec<BusyEnd>, CaseError> {
    let mut server = run.start()?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = connect(server.addr())?;
        stream.set_nonblocking(true)?;
        conns.push(BusyConn {
            stream,
            reply: Reply::default(),
            partial: 0,
            end: BusyEnd {
                replies: 0,
                ending: None,
                torn: false,
                wrong: false,
            },
        });
    }
    let request: Vec<u8> = match run.protocol {
        Protocol::Echo => pattern(64, 5),
        Protocol::Http => GET.to_vec(),
    };
    let exited = AtomicBool::new(false);
    let root = server.pid() as i32;
    let (driven, shutdown) = std::thread::scope(|scope| {
        let driver = scope.spawn(|| drive(run.protocol, &mut conns, &request, &exited));
        std::thread::sleep(Duration::from_millis(300));
        let shutdown = procfs::tree(root)
            .map_err(CaseError::from)
            .and_then(|tree| shut_down_cleanly(&mut server, &tree));
        exited.store(true, Ordering::Relaxed);
        (driver.join(), shutdown)
    });
    shutdown?;
    driven.map_err(|_| "the client driver panicked")??;
    Ok(conns.into_iter().map(|c| c.end).collect())
}

/// Drives the connections until every one has ended, or 5 s after `exited` turns true.
fn drive(
    protocol: Protocol,
    conns: &mut [BusyConn],
    request: &[u8],
    exited: &AtomicBool,
) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, c) in conns.iter_mut().enumerate() {
        epoll.add(
            c.stream.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, i as u64),
        )?;
        send(c, request);
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = conns.len();
    let mut exit_seen: Option<Instant> = None;
    while open > 0 {
        if exit_seen.is_none() && exited.load(Ordering::Relaxed) {
            exit_seen = Some(Instant::now());
        }
        if exit_seen.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            break;
        }
        let ready = epoll.wait(&mut events, EpollTimeout::from(10u16))?;
        for ev in &events[..ready] {
            let c = &mut conns[ev.data() as usize];
            if c.end.ending.is_some() {
                continue;
            }
            loop {
                match (&c.stream).read(&mut buf) {
                    Ok(0) => {
                        finish(c, Ending::Fin);
                        break;
                    }
                    Ok(got) => {
                        c.partial += got;
                        let verdict = match protocol {
                            Protocol::Echo => c.reply.feed_echo(&buf[..got], request),
                            Protocol::Http => c.reply.feed_http(&buf[..got]),
                        };
                        match verdict {
                            ReplyCheck::Incomplete => {}
                            ReplyCheck::Complete { .. } => {
                                c.end.replies += 1;
                                c.partial = 0;
                                c.reply.reset();
                                send(c, request);
                            }
                            ReplyCheck::Mismatch => {
                                // A wrong reply ends the connection as far as the load goes.
                                c.end.wrong = true;
                                finish(c, Ending::Reset);
                            }
                        }
                        if c.end.ending.is_some() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        finish(c, Ending::Reset);
                        break;
                    }
                }
            }
            if c.end.ending.is_some() {
                open -= 1;
                let _ = epoll.delete(c.stream.as_fd());
            }
        }
    }
    Ok(())
}

/// Sends the next request. A refused write says nothing yet of how the connection ended (an
/// RST after the server's FIN fails it with EPIPE); the read that follows says it.
fn send(c: &mut BusyConn, request: &[u8]) {
    // One small request on a socket with nothing else unsent: it fits in the send buffer.
    let _ = (&c.stream).write(request);
}

fn finish(c: &mut BusyConn, ending: Ending) {
    if c.end.ending.is_none() {
        c.end.ending = Some(ending);
        c.end.torn = c.partial > 0;
    }
}
