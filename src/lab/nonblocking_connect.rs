//! `nonblocking-connect`: how an event loop connects without blocking.
//!
//! connect() on a nonblocking socket starts the handshake and returns EINPROGRESS; the socket
//! becomes writable when the handshake ends, either way; getsockopt(SO_ERROR) then says how it
//! ended (0, or ECONNREFUSED when nothing listens) and clears the error. Stevens (UNP 16.3)
//! warns that a connect to a server on the same host may complete at once and return 0; Linux
//! returns EINPROGRESS even on loopback, where the handshake is over before connect() returns,
//! so the code path for "completed at once" is seldom exercised there.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::socket::{self, SockaddrStorage};

use super::{
    Lab, Recorder, Verdict, bind, connect_nonblocking, diag, local_addr, loopback_any, poll_names,
    render, so_error, status, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "nonblocking-connect",
    summary: "EINPROGRESS, completion seen as writability, the result read from SO_ERROR",
    claim: "a nonblocking connect() returns EINPROGRESS; the socket turns writable when the \
            handshake ends, and getsockopt(SO_ERROR) gives the result: 0, or ECONNREFUSED when \
            nothing listens — reported the same way",
    run,
};

const WAIT: Duration = Duration::from_secs(1);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let server = listener.local_addr()?;
    rec.say(format!("a listener on {server}"));
    let (fd, said) = connect_nonblocking(server)?;
    let said = rec.saw("connect", "connect() on a nonblocking socket", said);
    rec.saw(
        "state_after_return",
        "the socket's state right after connect() returned",
        diag::state(local_addr(&fd)?, server)?,
    );
    let ready = rec.saw(
        "ready",
        "poll(POLLOUT)",
        poll_names(wait_for(&fd, PollFlags::POLLOUT, WAIT)?),
    );
    let result = rec.saw("so_error", "getsockopt(SO_ERROR)", so_error(&fd)?);
    // Calling connect() again is the other way to learn the result: Linux answers 0 once
    // (and marks the socket connected), then EISCONN.
    rec.saw(
        "connect_again",
        "connect() again",
        status(socket::connect(
            fd.as_raw_fd(),
            &SockaddrStorage::from(server),
        )),
    );
    rec.saw(
        "connect_third",
        "connect() a third time",
        status(socket::connect(
            fd.as_raw_fd(),
            &SockaddrStorage::from(server),
        )),
    );

    // A port that is bound but not listening: the SYN is answered with RST.
    let closed = bind(loopback_any(), false)?;
    let nowhere = local_addr(&closed)?;
    rec.say(format!("{nowhere} is bound by a socket that never listens"));
    let (fd, said_refused) = connect_nonblocking(nowhere)?;
    let said_refused = rec.saw(
        "refused_connect",
        "connect() on a nonblocking socket",
        said_refused,
    );
    let refused_ready = rec.saw(
        "refused_ready",
        "poll(POLLOUT)",
        poll_names(wait_for(&fd, PollFlags::POLLOUT, WAIT)?),
    );
    let refused = rec.saw("refused_so_error", "getsockopt(SO_ERROR)", so_error(&fd)?);
    let cleared = rec.saw(
        "refused_so_error_again",
        "getsockopt(SO_ERROR) again (reading clears it)",
        so_error(&fd)?,
    );

    let writable = |v: &serde_json::Value| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|f| f == "POLLOUT"))
    };
    let held = said == "EINPROGRESS"
        && writable(&ready)
        && result == "0"
        && said_refused == "EINPROGRESS"
        && writable(&refused_ready)
        && refused == "ECONNREFUSED"
        && cleared == "0";
    let [said, ready, result, said_refused, refused_ready, refused] = [
        &said,
        &ready,
        &result,
        &said_refused,
        &refused_ready,
        &refused,
    ]
    .map(render);
    let summary = format!(
        "connect() said {said} even on loopback; success showed as {ready}, SO_ERROR {result}; \
         the refused connect said {said_refused}, showed as {refused_ready}, SO_ERROR {refused}"
    );
    Ok(Verdict::new(held, summary))
}
