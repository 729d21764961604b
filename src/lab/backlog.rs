//! `backlog`: what listen(2)'s backlog bounds, and what a client sees when the accept queue
//! (已完成连接队列) is full.
//!
//! A listener with backlog 3 never calls accept(); six clients connect one after another. The
//! lab reads each client's state, the listener's Recv-Q (connections queued) and Send-Q (the
//! backlog in force), then asks for a backlog above `net.core.somaxconn` to see the cap, and
//! finally accepts one connection to watch a waiting client get in when it retransmits its SYN.
//!
//! On Linux the queue takes backlog + 1 connections: the listener refuses a SYN only when the
//! queue already holds *more* than the backlog (`sk_acceptq_is_full`). A SYN that finds the
//! queue full is dropped without an answer (`tcp_conn_request` counts it in `TcpExt
//! ListenOverflows` and `ListenDrops`), so the client sits in SYN_SENT and retransmits (after
//! 1 s, then 2, 4, ...; `TcpExt TCPSynRetrans`), which is what the books describe. The lab
//! reads those counters, in a network namespace of its own when it may (as root), so that
//! they count its clients alone. (With `net.ipv4.tcp_abort_on_overflow` set, a connection
//! that cannot be queued is reset instead.)

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::json;

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Lab, Recorder, Verdict, accept_within, bind, connect_nonblocking, diag, listen_exact,
    local_addr, loopback_any, millis, so_error, sysctl_number, wait_for,
};

/// The lab.
pub const LAB: Lab = Lab {
    name: "backlog",
    summary: "a listener that never accepts: how many handshakes complete, what the rest see",
    claim: "listen(fd, backlog) lets at most `backlog` completed connections wait for accept(), \
            capped at net.core.somaxconn; when the queue is full the server ignores new SYNs \
            (no RST), so those clients wait and retry",
    run,
};

const BACKLOG: i32 = 3;
const CLIENTS: usize = 6;

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    let listener = listen_exact(bind(loopback_any(), true)?, BACKLOG)?;
    let server = listener.local_addr()?;
    rec.say(format!(
        "listen(fd, {BACKLOG}) on {server}; accept() is never called; {CLIENTS} clients connect"
    ));

    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut states = Vec::new();
    let mut syn_sent_at = Vec::new();
    let before = Counters::read()?;
    for i in 1..=CLIENTS {
        syn_sent_at.push(Instant::now());
        let (fd, said) = connect_nonblocking(server)?;
        // On loopback the handshake (or the dropped SYN) is over within microseconds.
        wait_for(&fd, PollFlags::POLLOUT, Duration::from_millis(100))?;
        let state = diag::state(local_addr(&fd)?, server)?;
        rec.saw(
            &format!("client_{i}"),
            format!("client {i}: connect() -> {said}; its state"),
            state,
        );
        states.push(state);
        clients.push(fd);
    }
    // Read before any SYN is retransmitted (the first retransmission comes after 1 s).
    let after_connects = Counters::read()?;
    let overflows = after_connects.since(&before, "TcpExt.ListenOverflows");
    let drops = after_connects.since(&before, "TcpExt.ListenDrops");
    rec.saw(
        "dropped_syns",
        "counters after the six connects: SYNs dropped for a full accept queue",
        json!({ "TcpExt.ListenOverflows": overflows, "TcpExt.ListenDrops": drops }),
    );
    let completed = states.iter().filter(|s| **s == "ESTABLISHED").count();
    let waiting = states.iter().filter(|s| **s == "SYN_SENT").count();
    rec.saw(
        "completed",
        "clients whose handshake completed, no accept() called",
        completed,
    );
    rec.saw(
        "syn_sent",
        "clients left in SYN_SENT (their SYN dropped)",
        waiting,
    );
    let mut refused = 0;
    for fd in &clients {
        if so_error(fd)? == "ECONNREFUSED" {
            refused += 1;
        }
    }
    rec.saw(
        "refused",
        "clients refused (SO_ERROR = ECONNREFUSED)",
        refused,
    );
    let l = diag::listener(server)?
        .ok_or_else(|| io::Error::other("the listener is missing from sock_diag"))?;
    rec.saw(
        "listener_recv_q",
        "listener Recv-Q: connections in the accept queue",
        l.recv_q,
    );
    rec.saw(
        "listener_send_q",
        "listener Send-Q: the backlog in force",
        l.send_q,
    );

    rec.saw(
        "abort_on_overflow",
        "sysctl net.ipv4.tcp_abort_on_overflow (1: reset instead of drop)",
        sysctl_number("net/ipv4/tcp_abort_on_overflow")?,
    );

    // The cap: ask for more than somaxconn.
    let somaxconn = sysctl_number("net/core/somaxconn")?;
    rec.saw("somaxconn", "sysctl net.core.somaxconn", somaxconn);
    let asked = i32::try_from(somaxconn + 1000).unwrap_or(i32::MAX);
    let big = listen_exact(bind(loopback_any(), true)?, asked)?;
    let cap = diag::listener(big.local_addr()?)?.map(|l| l.send_q);
    let cap = rec.saw(
        "capped_backlog",
        format!("Send-Q of a listener that asked for {asked}"),
        cap,
    );
    drop(big);

    // Room for one more: the first waiting client gets in when its SYN is retransmitted.
    let pending: Vec<(&OwnedFd, Instant)> = clients
        .iter()
        .zip(&states)
        .zip(&syn_sent_at)
        .filter(|((_, s), _)| **s == "SYN_SENT")
        .map(|((fd, _), at)| (fd, *at))
        .collect();
    let pending_fds: Vec<&OwnedFd> = pending.iter().map(|(fd, _)| *fd).collect();
    let before_retry = Counters::read()?;
    let _first = accept_within(&listener, Duration::from_secs(1))?;
    rec.say("accept() one connection; wait up to 3 s for a waiting client to retry");
    let start = Instant::now();
    let got_in = first_writable(&pending_fds, Duration::from_secs(3))?;
    let after = millis(start.elapsed());
    // How long after its first SYN the client got in: its SYN's retransmission timeout.
    let since_syn = got_in
        .and_then(|i| pending.get(i))
        .map(|(_, at)| millis(at.elapsed()));
    let retransmitted = Counters::read()?.since(&before_retry, "TcpExt.TCPSynRetrans");
    let mut now_established = 0;
    for fd in &pending_fds {
        if diag::state(local_addr(*fd)?, server)? == "ESTABLISHED" {
            now_established += 1;
        }
    }
    rec.saw(
        "retry",
        "after one accept(): waiting clients now ESTABLISHED, ms until the first",
        json!({ "established": now_established, "after_ms": got_in.map(|_| after),
                "since_its_syn_ms": since_syn }),
    );
    rec.saw(
        "syn_retransmits",
        "SYNs retransmitted meanwhile (TcpExt.TCPSynRetrans)",
        retransmitted,
    );

    let queue_as_books = completed == BACKLOG as usize;
    let capped = cap == somaxconn;
    let dropped = waiting == CLIENTS - completed
        && refused == 0
        && scope.agrees(overflows, waiting as u64)
        && scope.agrees(drops, waiting as u64);
    // The first retransmission of a SYN comes TCP_TIMEOUT_INIT (1 s) after it.
    let retried = now_established == 1 && retransmitted >= 1 && since_syn >= Some(900);
    let summary = format!(
        "the queue took {completed} connections for backlog {BACKLOG}{}; the cap at somaxconn \
         {}; full-queue SYNs were {} (ListenOverflows +{overflows}, ListenDrops +{drops}, {}); \
         one waiting client {} {} ms after its first SYN (TCPSynRetrans +{retransmitted})",
        if completed == BACKLOG as usize + 1 {
            " (Linux admits backlog+1)"
        } else {
            ""
        },
        if capped { "held" } else { "did not hold" },
        if dropped {
            "dropped, not refused"
        } else {
            "not simply dropped"
        },
        scope.word(),
        if retried { "got in" } else { "did not get in" },
        since_syn.map_or("-".to_string(), |ms| ms.to_string()),
    );
    Ok(Verdict::new(
        queue_as_books && capped && dropped && retried,
        summary,
    ))
}

/// Waits at most `timeout` for the first of `fds` to become writable; returns its index.
fn first_writable(fds: &[&OwnedFd], timeout: Duration) -> io::Result<Option<usize>> {
    if fds.is_empty() {
        return Ok(None);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut polled: Vec<PollFd> = fds
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLOUT))
            .collect();
        match poll(
            &mut polled,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                return Ok(polled
                    .iter()
                    .position(|p| p.revents().is_some_and(|r| !r.is_empty())));
            }
            Err(Errno::EINTR) if !left.is_zero() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
