//! `sigpipe`: writing to a peer that has closed, and to one that has reset.
//!
//! Part one: the peer close()d, and the server has read its FIN (its socket is CLOSE_WAIT). A
//! FIN only says "I will send no more"; it cannot say "and I will read no more". So the first
//! write succeeds (the bytes are queued and sent); the peer's socket, closed by its owner and
//! left by the kernel in FIN_WAIT2 with no one to read, answers with RST (RFC 1122 4.2.2.13;
//! counted in `Tcp OutRsts`). `tcp_reset` (net/ipv4/tcp_input.c) gives a socket in
//! CLOSE_WAIT the error EPIPE, so the next write fails with EPIPE — and raises SIGPIPE, whose
//! default action ends the process.
//!
//! Part two: the peer resets (SO_LINGER {on, 0}) while the server's socket is still
//! ESTABLISHED. There `tcp_reset` gives ECONNRESET: the first write fails with ECONNRESET and
//! raises no signal; only the next one, on a socket now shut both ways, gets EPIPE and SIGPIPE
//! (`sk_stream_error` sends SIGPIPE for EPIPE alone). So "a write after an RST gets EPIPE and
//! SIGPIPE" (UNP 5.13) holds in CLOSE_WAIT only.
//!
//! A server that should survive a client vanishing ignores SIGPIPE or writes with
//! MSG_NOSIGNAL. Rust's runtime sets SIGPIPE to SIG_IGN before `main`, so this process sees
//! the error numbers; the lab forks children that restore SIG_DFL to show the signal's
//! default action. The RSTs are counted in a network namespace of the lab's own when it may
//! (as root), so that the counts are its sockets' alone.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::signal::{self, SigHandler, Signal};

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Forked, Lab, Recorder, Verdict, abort, accept_within, connect, describe_status, diag,
    loopback_any, outcome, poll_names, render, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "sigpipe",
    summary: "write to a closed peer: the first succeeds, the next gets EPIPE or SIGPIPE; after a reset, ECONNRESET first",
    claim: "writing to a peer that closed: the first write succeeds and the peer answers with \
            RST; a write to a socket that has received an RST fails with EPIPE when SIGPIPE is \
            ignored, and SIGPIPE kills a process that keeps the default disposition",
    run,
};

const WAIT: Duration = Duration::from_secs(1);

/// A connection whose client has reset it (SO_LINGER {on, 0}) while the server's end was
/// ESTABLISHED, the RST arrived; returns the server's end and its state before the reset.
fn reset_by_peer(listener: &std::net::TcpListener) -> io::Result<(TcpStream, &'static str)> {
    let client = connect(listener.local_addr()?)?;
    let server = accept_within(listener, WAIT)?;
    let state = diag::state(server.local_addr()?, server.peer_addr()?)?;
    abort(client)?;
    wait_for(&server, PollFlags::POLLERR, WAIT)?;
    Ok((server, state))
}

/// A connection whose client has closed and whose FIN the server has seen.
fn closed_by_peer(listener: &std::net::TcpListener) -> io::Result<TcpStream> {
    let client = connect(listener.local_addr()?)?;
    let server = accept_within(listener, WAIT)?;
    drop(client);
    // The FIN makes the socket readable (read would return 0).
    wait_for(&server, PollFlags::POLLIN, WAIT)?;
    Ok(server)
}

/// write(2) of one byte. Not `Write::write` on a `TcpStream`: Rust's standard library sends
/// on sockets with MSG_NOSIGNAL, which is exactly what would hide SIGPIPE here.
fn write_one(stream: &TcpStream) -> io::Result<u64> {
    Ok(nix::unistd::write(stream, b"x")? as u64)
}

/// send(2) of one byte with MSG_NOSIGNAL, as Rust's `TcpStream` writes.
fn send_nosignal(stream: &TcpStream) -> io::Result<u64> {
    let mut writer = stream;
    writer.write(b"x").map(|n| n as u64)
}

/// Forks a child that restores SIGPIPE's default action and, on each order, writes one byte
/// to `server`: `w` with write(2), `s` with send(MSG_NOSIGNAL); it answers with [`code`].
fn writer_child(server: &TcpStream) -> io::Result<Forked> {
    Forked::spawn(|orders| {
        // SAFETY: SIG_DFL installs no handler; nothing in this process relies on SIGPIPE
        // being ignored.
        if unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.is_err() {
            return 2;
        }
        while let Some(order) = orders.wait() {
            let wrote = match order {
                b'w' => write_one(server),
                _ => send_nosignal(server),
            };
            orders.answer(code(wrote));
        }
        0
    })
}

/// A one-byte answer from the child for a write's outcome.
fn code(result: io::Result<u64>) -> u8 {
    match result {
        Ok(_) => b'1',
        Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => b'P',
        Err(e) if e.raw_os_error() == Some(nix::libc::ECONNRESET) => b'R',
        Err(_) => b'0',
    }
}

/// The child's answer in words.
fn answered(answer: io::Result<u8>) -> String {
    match answer {
        Ok(b'1') => "ok".to_string(),
        Ok(b'P') => "EPIPE".to_string(),
        Ok(b'R') => "ECONNRESET".to_string(),
        Ok(_) => "failed otherwise".to_string(),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "no answer".to_string(),
        Err(e) => e.to_string(),
    }
}

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    let disposition = rec.saw(
        "sigpipe_disposition",
        "this process's SIGPIPE disposition (/proc/self/status SigIgn)",
        if sigpipe_ignored()? {
            "SIG_IGN"
        } else {
            "not ignored"
        },
    );
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let server_addr = listener.local_addr()?;

    let server = closed_by_peer(&listener)?;
    let peer = server.peer_addr()?;
    rec.say("the client closed; the server has read its FIN");
    rec.saw(
        "server_state",
        "server socket",
        diag::state(server_addr, peer)?,
    );
    let before = Counters::read()?;
    let first = rec.saw(
        "first_write",
        "server: write(1 byte)",
        outcome(write_one(&server)),
    );
    rec.saw(
        "after_first_write",
        "server: poll() for the answer",
        poll_names(wait_for(&server, PollFlags::POLLERR, WAIT)?),
    );
    let rsts = rec.saw(
        "rst_sent",
        "RSTs the peer's kernel sent in answer (Tcp.OutRsts)",
        Counters::read()?.since(&before, "Tcp.OutRsts"),
    );
    rec.saw(
        "server_state_after_rst",
        "server socket after the RST",
        diag::state(server_addr, peer)?,
    );
    let second = rec.saw(
        "second_write",
        "server: write(1 byte) again",
        outcome(write_one(&server)),
    );

    // The same in a child with the default disposition.
    let server = closed_by_peer(&listener)?;
    let mut child = writer_child(&server)?;
    rec.say(format!(
        "child {} restores SIG_DFL for SIGPIPE and writes to another closed peer",
        child.pid()
    ));
    let child_first = rec.saw(
        "child_first_write",
        "child: write(1 byte)",
        answered(child.ask(b'w', WAIT)),
    );
    wait_for(&server, PollFlags::POLLERR, WAIT)?;
    let child_nosignal = rec.saw(
        "child_send_nosignal",
        "child: send(1 byte, MSG_NOSIGNAL), as Rust's TcpStream writes",
        answered(child.ask(b's', WAIT)),
    );
    let child_second = rec.saw(
        "child_second_write",
        "child: write(1 byte) again",
        answered(child.ask(b'w', WAIT)),
    );
    let status = child.wait(WAIT)?;
    let fate = rec.saw("child", "the child", describe_status(&status));

    rec.say("part two: the client resets (SO_LINGER {on, 0}) while the server is ESTABLISHED");
    let before = Counters::read()?;
    let (server, state_before) = reset_by_peer(&listener)?;
    let reset_rsts = Counters::read()?.since(&before, "Tcp.OutRsts");
    rec.saw(
        "reset_server_state",
        "server socket when the RST came",
        state_before,
    );
    rec.saw(
        "reset_rst_sent",
        "RSTs the client's kernel sent (Tcp.OutRsts)",
        reset_rsts,
    );
    let reset_first = rec.saw(
        "reset_first_write",
        "server: write(1 byte)",
        outcome(write_one(&server)),
    );
    let reset_second = rec.saw(
        "reset_second_write",
        "server: write(1 byte) again",
        outcome(write_one(&server)),
    );
    let (server, _) = reset_by_peer(&listener)?;
    let mut child = writer_child(&server)?;
    rec.say(format!(
        "child {} restores SIG_DFL and writes to another reset connection",
        child.pid()
    ));
    let reset_child_first = rec.saw(
        "reset_child_first_write",
        "child: write(1 byte)",
        answered(child.ask(b'w', WAIT)),
    );
    rec.saw(
        "reset_child_second_write",
        "child: write(1 byte) again",
        answered(child.ask(b'w', WAIT)),
    );
    let status = child.wait(WAIT)?;
    let reset_fate = rec.saw("reset_child", "the child", describe_status(&status));

    let rst_seen = scope.agrees(rsts.as_u64().unwrap_or(0), 1);
    let closed_peer = disposition == "SIG_IGN"
        && first == 1
        && rst_seen
        && second == "EPIPE"
        && child_first == "ok"
        && child_nosignal == "EPIPE"
        && child_second == "no answer"
        && fate == "killed by SIGPIPE";
    // As the books put it, the first write after any RST would fail with EPIPE and SIGPIPE.
    let books_after_reset = reset_first == "EPIPE" && reset_child_first == "no answer";
    let [first, second, child_first, child_nosignal, fate] =
        [&first, &second, &child_first, &child_nosignal, &fate].map(render);
    let [reset_first, reset_second, reset_child_first, reset_fate] =
        [&reset_first, &reset_second, &reset_child_first, &reset_fate].map(render);
    let summary = format!(
        "to a peer that closed (server in CLOSE_WAIT): first write returned {first}, the peer \
         sent an RST (OutRsts +{}, {}), the next write {second}; the child with SIG_DFL: first \
         write {child_first}, send with MSG_NOSIGNAL {child_nosignal}, then write {fate}. After \
         an RST in ESTABLISHED the first write got {reset_first}, the next {reset_second}; the \
         child's first write {reset_child_first} and it lived, the next: {reset_fate}",
        render(&rsts),
        scope.word(),
    );
    Ok(Verdict::new(closed_peer && books_after_reset, summary))
}

/// Whether SIGPIPE is ignored, read from the SigIgn mask in /proc/self/status.
fn sigpipe_ignored() -> io::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no SigIgn line in /proc/self/status"))?;
    Ok(mask & (1 << (Signal::SIGPIPE as u64 - 1)) != 0)
}
