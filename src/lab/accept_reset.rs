//! `accept-reset`: a client resets while its connection waits in the accept queue; what does
//! accept() return? And why must an event loop's listener be nonblocking?
//!
//! The books give two answers to the first question (Stevens, UNP 5.11): Berkeley-derived
//! kernels drop the connection inside the kernel and accept() never sees it; POSIX (and SVR4)
//! have accept() fail with ECONNABORTED. Linux does neither: the reset connection stays in the
//! queue, accept() returns it as a new descriptor, and the reset shows on the first call that
//! touches it (read fails with ECONNRESET). The lab shows which answer this kernel gives.
//!
//! The second question (UNP 16.6): readiness is a report about the past. Between poll()
//! saying "the listener is readable" and the accept() that follows, the connection can go — on
//! BSD because of the reset above, on any kernel because another process sharing the listener
//! (prefork, or several event loops on one socket) accepted it first. A blocking accept() then
//! sleeps until some other client arrives, and the whole event loop with it. The lab forks a
//! second acceptor to take the connection, then shows a blocking accept() stuck (bounded here
//! by SO_RCVTIMEO, which Linux applies to accept) and a nonblocking one returning EAGAIN.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{self, sockopt};
use nix::sys::time::TimeVal;
use serde_json::json;

use super::{
    Forked, Lab, Recorder, Verdict, abort, connect, describe_status, diag, errno_name,
    loopback_any, millis, outcome, poll_names, read_once, render, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "accept-reset",
    summary: "a connection reset while queued: what accept() returns; why listeners must be nonblocking",
    claim: "a connection reset by the client while it waits in the accept queue is not handed to \
            the server: Berkeley kernels drop it, POSIX has accept() fail with ECONNABORTED; and \
            a listener poll() reported readable can have nothing to accept, so an event loop's \
            listener must be nonblocking",
    run,
};

const WAIT: Duration = Duration::from_secs(1);
/// How long the deliberately stuck blocking accept() may sleep.
const STUCK: Duration = Duration::from_millis(300);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let opts = ListenOptions {
        backlog: 8,
        ..Default::default()
    };
    let listener = net::listen(loopback_any(), &opts)?;
    let server = listener.local_addr()?;
    rec.say(format!(
        "listen on {server}; a client connects and waits in the queue"
    ));

    let client = connect(server)?;
    let client_addr = client.local_addr()?;
    rec.saw(
        "queued",
        "listener Recv-Q with the client queued",
        diag::listener(server)?.map(|l| l.recv_q),
    );
    abort(client)?;
    rec.say("the client closes with SO_LINGER {on, 0}: an RST instead of a FIN");
    rec.saw(
        "queued_after_reset",
        "listener Recv-Q after the reset",
        diag::listener(server)?.map(|l| l.recv_q),
    );
    rec.saw(
        "readable_after_reset",
        "poll(listener, POLLIN)",
        poll_names(wait_for(&listener, PollFlags::POLLIN, Duration::ZERO)?),
    );
    listener.set_nonblocking(true)?;
    let accepted = listener.accept();
    let accept_result = rec.saw(
        "accept",
        "accept() (nonblocking)",
        match &accepted {
            Ok(_) => "ok".to_string(),
            Err(e) => errno_name(e),
        },
    );
    if let Ok((conn, _)) = &accepted {
        rec.saw(
            "accepted_state",
            "the accepted socket in sock_diag",
            diag::state(server, client_addr)?,
        );
        rec.saw(
            "getpeername",
            "getpeername() on it",
            outcome(conn.peer_addr().map(|a| a.to_string())),
        );
        rec.saw("first_read", "read() on it", read_once(conn));
        rec.saw("second_read", "read() again", read_once(conn));
    }
    drop(accepted);

    // Two acceptors on one listener: the connection goes before our accept() comes.
    listener.set_nonblocking(false)?;
    socket::setsockopt(
        &listener,
        sockopt::ReceiveTimeout,
        &TimeVal::new(0, STUCK.as_micros() as i64),
    )?;
    let shared = listener.as_raw_fd();
    let mut other = Forked::spawn(|orders| {
        while let Some(order) = orders.wait() {
            if order == b'a' {
                // The child's copy of the listener is the same socket (one open file
                // description), as in prefork; SO_RCVTIMEO bounds this accept too.
                let took = socket::accept(shared).map(nix::unistd::close);
                orders.answer(if took.is_ok() { b'1' } else { b'0' });
            }
        }
        0
    })?;
    rec.say(format!(
        "forked process {} shares the listener, as prefork children do",
        other.pid()
    ));
    let _client2 = connect(server)?;
    let before = rec.saw(
        "readable_before_race",
        "a second client queued; poll(listener, POLLIN)",
        poll_names(wait_for(&listener, PollFlags::POLLIN, WAIT)?),
    );
    let took = other.ask(b'a', WAIT)?;
    rec.saw(
        "other_process_accept",
        "the other process accept()s first",
        if took == b'1' { "ok" } else { "failed" },
    );
    let start = Instant::now();
    let blocking = outcome(listener.accept().map(|_| "ok"));
    let blocked_ms = millis(start.elapsed());
    let blocking = rec.saw(
        "blocking_accept",
        format!("our blocking accept() (bounded by SO_RCVTIMEO {STUCK:?})"),
        json!({ "result": blocking, "blocked_ms": blocked_ms }),
    );
    listener.set_nonblocking(true)?;
    let nonblocking = rec.saw(
        "nonblocking_accept",
        "our nonblocking accept()",
        outcome(listener.accept().map(|_| "ok")),
    );
    let status = other.wait(WAIT)?;
    rec.saw(
        "other_process",
        "the other process",
        describe_status(&status),
    );

    let reset_hidden = accept_result == "ECONNABORTED" || accept_result == "EAGAIN";
    let race_shown = before.as_array().is_some_and(|a| !a.is_empty())
        && blocking["result"] == "EAGAIN"
        && nonblocking == "EAGAIN";
    let summary = format!(
        "{}; a readable listener emptied by another acceptor left a blocking accept() asleep \
         {blocked_ms} ms (until SO_RCVTIMEO) and a nonblocking one with {}",
        if accept_result == "ok" {
            "Linux hands out the reset connection: accept() returns it and the reset shows on the \
             first read (neither BSD's silent drop nor POSIX's ECONNABORTED)"
                .to_string()
        } else {
            format!(
                "accept() of the reset connection: {}",
                render(&accept_result)
            )
        },
        render(&nonblocking)
    );
    Ok(Verdict::new(reset_hidden && race_shown, summary))
}
