//! `linger`: what SO_LINGER does to close(), and what it does not.
//!
//! Four closes, each of a client whose peer stopped reading (its window full, so the client's
//! Send-Q holds bytes the peer has not acknowledged), except the first:
//!
//! 1. `SO_LINGER {on, 0}`: close() aborts — an RST instead of a FIN, the connection gone on
//!    both sides, no TIME_WAIT. The load generator's churn closes this way, so that thousands
//!    of client ports a second do not pile up in TIME_WAIT. The kernel counts the abort as
//!    `TcpExt TCPAbortOnData` (the branch of `__tcp_close` after "Check zero linger", whose
//!    counter's name is older than its use) and the RST in `Tcp OutRsts`.
//! 2. `SO_LINGER {on, 1}` on a blocking socket: close() sleeps until the data is acknowledged
//!    or the second passes (`sk_stream_wait_close`). The books (UNP 7.5, of Berkeley kernels)
//!    say that when the time runs out close() fails with EWOULDBLOCK and the rest of the send
//!    buffer is discarded. Linux returns 0 and discards nothing: the socket is orphaned and the
//!    kernel goes on sending, and the peer, once it reads, gets every byte and then EOF.
//! 3. The same on a nonblocking socket, which the books say does not wait at all. Linux
//!    lingers all the same: `inet_release` takes the linger time whatever O_NONBLOCK says.
//! 4. `shutdown(SHUT_WR)` with `SO_LINGER {on, 1}`: socket(7) says shutdown lingers too;
//!    TCP's shutdown only queues the FIN (`tcp_shutdown`) and returns.
//! 5. The default (no SO_LINGER): close() returns at once; the orphaned socket, in
//!    FIN_WAIT1 with its Send-Q, keeps sending, and the data arrives after close returned.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::PollFlags;
use nix::sys::socket::{self, sockopt};
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Filled, Lab, Recorder, Verdict, abort, accept_within, connect, diag, fill, loopback_any,
    millis, outcome, read_once, render, settled_state, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "linger",
    summary: "SO_LINGER {on,0} resets with no TIME_WAIT; {on,N} makes close() wait; the default returns at once",
    claim: "with SO_LINGER {on, 0} close() sends RST and leaves no TIME_WAIT; with {on, N} it \
            blocks until the data is acknowledged or N seconds pass — not at all on a \
            nonblocking socket — and if the time runs out it fails with EWOULDBLOCK and the \
            unsent data is discarded (UNP 7.5); without SO_LINGER close() returns at once and \
            the kernel goes on sending",
    run,
};

const WAIT: Duration = Duration::from_secs(2);
/// The linger time asked for, in seconds.
const LINGER_S: i32 = 1;
/// Small buffers, so that a peer that does not read fills them at once.
const BUF: usize = 4096;
const CHUNK: usize = 1024;
const WRITE_LIMIT: usize = 16 * 1024 * 1024;

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    // SO_RCVBUF on the listener, before any handshake, sizes the window the peers advertise.
    socket::setsockopt(&listener, sockopt::RcvBuf, &BUF)?;

    rec.say("1. SO_LINGER {on, 0}, then close()");
    let (abort_ok, abort_line) = abortive(rec, &listener, &scope)?;

    rec.say(format!(
        "2. SO_LINGER {{on, {LINGER_S}}} on a blocking socket whose peer does not read; close()"
    ));
    let blocking = lingering(rec, &listener, "linger_blocking", false)?;
    rec.say(format!(
        "3. the same on a nonblocking socket (O_NONBLOCK), SO_LINGER {{on, {LINGER_S}}}; close()"
    ));
    let nonblocking = lingering(rec, &listener, "linger_nonblocking", true)?;

    rec.say(format!(
        "4. SO_LINGER {{on, {LINGER_S}}}, peer not reading; shutdown(SHUT_WR)"
    ));
    let shutdown_ms = shutdown_lingers(rec, &listener)?;

    rec.say("5. no SO_LINGER (the default), peer not reading; close()");
    let default = default_close(rec, &listener)?;

    let floor = u64::try_from(LINGER_S).unwrap_or(1) * 1000 - 100;
    let waited = |c: &Closed| c.close_ms >= floor && c.returned == "ok";
    let kept = |c: &Closed| c.queued_after > 0 && c.delivered == c.written && c.eof;
    let lingered = waited(&blocking) && waited(&nonblocking);
    // Other connections' RSTs count too in the shared namespace: "none" is checked only in a
    // private one.
    let no_rst = !scope.exact() || (blocking.rsts == 0 && nonblocking.rsts == 0);
    let linux_keeps = kept(&blocking) && kept(&nonblocking) && no_rst;
    let default_ok = default.close_ms < floor && kept(&default);
    let summary = format!(
        "{abort_line}; with SO_LINGER {{on, {LINGER_S}}} close() slept {} ms (blocking) and {} ms \
         (nonblocking), returned {} and discarded nothing: Send-Q still {} after it (the unsent \
         bytes and the FIN), then all {} bytes delivered and EOF{}; shutdown() returned \
         after {shutdown_ms} ms; without SO_LINGER close() took {} ms with Send-Q {} left, and \
         the kernel delivered it afterwards",
        blocking.close_ms,
        nonblocking.close_ms,
        blocking.returned,
        blocking.queued_after,
        blocking.written,
        if scope.exact() { ", no RST" } else { "" },
        default.close_ms,
        default.queued_after,
    );
    // As the books state it, the nonblocking close would not wait and the lingering one
    // would fail with EWOULDBLOCK and discard: Linux does neither.
    let books = !waited(&nonblocking) || blocking.returned == "EWOULDBLOCK";
    Ok(Verdict::new(
        abort_ok && lingered && linux_keeps && default_ok && books,
        summary,
    ))
}

/// Part 1: the abortive close, beside a plain one. Returns whether it behaved as described
/// and its line of the verdict.
fn abortive(
    rec: &mut Recorder,
    listener: &TcpListener,
    scope: &Scope,
) -> io::Result<(bool, String)> {
    let server_addr = listener.local_addr()?;
    let client = connect(server_addr)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(listener, WAIT)?;
    (&client).write_all(b"hi")?;
    server.set_read_timeout(Some(WAIT))?;
    (&server).read_exact(&mut [0u8; 2])?;

    let before = Counters::read()?;
    abort(client)?;
    wait_for(&server, PollFlags::POLLIN, WAIT)?;
    let after = Counters::read()?;
    let counted = json!({
        "TcpExt.TCPAbortOnData": after.since(&before, "TcpExt.TCPAbortOnData"),
        "Tcp.OutRsts": after.since(&before, "Tcp.OutRsts"),
    });
    rec.saw(
        "abort_counters",
        "counters around the close: aborts (TCPAbortOnData) and RSTs sent (OutRsts)",
        counted.clone(),
    );
    let client_side = rec.saw(
        "abort_client_state",
        "client's end of the connection after close() (sock_diag)",
        diag::state(client_addr, server_addr)?,
    );
    server.set_nonblocking(true)?;
    let server_read = rec.saw("abort_server_read", "server: read()", read_once(&server));

    // The same connection closed plainly: the client, closing first, holds TIME_WAIT.
    let client = connect(server_addr)?;
    let plain_addr = client.local_addr()?;
    let server = accept_within(listener, WAIT)?;
    let before = Counters::read()?;
    drop(client);
    server.set_read_timeout(Some(WAIT))?;
    let eof = (&server).read(&mut [0u8; 16])?;
    drop(server);
    let plain_state = rec.saw(
        "plain_client_state",
        "beside it, a plain close(): the client's end",
        settled_state(plain_addr, server_addr, &["FIN_WAIT1", "FIN_WAIT2"])?,
    );
    let plain_rsts = rec.saw(
        "plain_rsts",
        "RSTs sent around the plain close (OutRsts)",
        Counters::read()?.since(&before, "Tcp.OutRsts"),
    );

    let aborts = counted["TcpExt.TCPAbortOnData"].as_u64().unwrap_or(0);
    let rsts = counted["Tcp.OutRsts"].as_u64().unwrap_or(0);
    let held = scope.agrees(aborts, 1)
        && scope.agrees(rsts, 1)
        && client_side == "gone"
        && server_read == "ECONNRESET"
        && eof == 0
        && plain_state == "TIME_WAIT"
        && (!scope.exact() || plain_rsts == 0);
    let line = format!(
        "SO_LINGER {{on, 0}}: close() sent an RST (OutRsts +{rsts}, TCPAbortOnData +{aborts}, \
         {}), the client's end was {} and the peer read {}, where a plain close left {}",
        scope.word(),
        render(&client_side),
        render(&server_read),
        render(&plain_state),
    );
    Ok((held, line))
}

/// What one close of a client with unacknowledged data came to.
struct Closed {
    written: usize,
    close_ms: u64,
    returned: String,
    /// The orphaned socket's Send-Q right after close() returned.
    queued_after: u32,
    delivered: usize,
    eof: bool,
    rsts: u64,
}

impl Closed {
    fn value(&self, state_after: &str) -> Value {
        json!({
            "written": self.written,
            "close_ms": self.close_ms,
            "close_returned": self.returned,
            "state_after": state_after,
            "send_q_after": self.queued_after,
            "peer_read": self.delivered,
            "peer_eof": self.eof,
            "rsts": self.rsts,
        })
    }
}

/// A client whose send buffer is full because its peer stopped reading; returns both ends.
struct Stuck {
    client: TcpStream,
    server: TcpStream,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    written: usize,
}

fn stuck(listener: &TcpListener) -> io::Result<Stuck> {
    let server_addr = listener.local_addr()?;
    let client = connect(server_addr)?;
    socket::setsockopt(&client, sockopt::SndBuf, &BUF)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(listener, WAIT)?;
    client.set_nonblocking(true)?;
    let Filled {
        written, stopped, ..
    } = fill(&client, &[b'x'; CHUNK], WRITE_LIMIT)?;
    if stopped != "EAGAIN" {
        return Err(io::Error::other(format!(
            "the send buffer did not fill: {}",
            render(&stopped)
        )));
    }
    Ok(Stuck {
        client,
        server,
        client_addr,
        server_addr,
        written,
    })
}

/// Reads everything the peer sends until EOF (or a read times out); returns bytes and EOF.
fn drain(server: &TcpStream) -> io::Result<(usize, bool)> {
    server.set_read_timeout(Some(WAIT))?;
    let mut total = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match (&mut &*server).read(&mut buf) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok((total, false)),
        }
    }
}

/// Closes `stuck.client` (with whatever SO_LINGER it has), timing the close; then looks at the
/// orphan and lets the peer drain.
fn close_and_watch(stuck: Stuck) -> io::Result<(Closed, &'static str)> {
    let Stuck {
        client,
        server,
        client_addr,
        server_addr,
        written,
    } = stuck;
    let before = Counters::read()?;
    let fd = std::os::fd::OwnedFd::from(client);
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    let start = Instant::now();
    // close(2) by hand, to see what it returns: `drop` would throw the result away.
    // SAFETY: `raw` came from into_raw_fd just above, so this process owns it and nothing
    // else will close it.
    let rc = unsafe { libc::close(raw) };
    let returned = if rc == 0 {
        "ok".to_string()
    } else {
        super::errno_name(&io::Error::last_os_error())
    };
    let close_ms = millis(start.elapsed());
    let orphan = diag::find(client_addr, server_addr)?;
    let state_after = orphan.as_ref().map_or("gone", |s| s.state);
    let queued_after = orphan.map_or(0, |s| s.send_q);
    let (delivered, eof) = drain(&server)?;
    let rsts = Counters::read()?.since(&before, "Tcp.OutRsts");
    Ok((
        Closed {
            written,
            close_ms,
            returned,
            queued_after,
            delivered,
            eof,
            rsts,
        },
        state_after,
    ))
}

/// SO_LINGER {on, `seconds`}.
fn linger_for(stream: &TcpStream, seconds: i32) -> io::Result<()> {
    socket::setsockopt(
        stream,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: seconds,
        },
    )?;
    Ok(())
}

/// Parts 2 and 3: SO_LINGER {on, N} with unacknowledged data.
fn lingering(
    rec: &mut Recorder,
    listener: &TcpListener,
    key: &str,
    nonblocking: bool,
) -> io::Result<Closed> {
    let stuck = stuck(listener)?;
    stuck.client.set_nonblocking(nonblocking)?;
    linger_for(&stuck.client, LINGER_S)?;
    let (closed, state_after) = close_and_watch(stuck)?;
    rec.saw(
        key,
        "close(): ms, what it returned; the orphan after it (sock_diag); what the peer read",
        closed.value(state_after),
    );
    Ok(closed)
}

/// Part 4: shutdown(SHUT_WR) with SO_LINGER set; returns how long it took, in ms.
fn shutdown_lingers(rec: &mut Recorder, listener: &TcpListener) -> io::Result<u64> {
    let stuck = stuck(listener)?;
    stuck.client.set_nonblocking(false)?;
    linger_for(&stuck.client, LINGER_S)?;
    let start = Instant::now();
    let result = outcome(stuck.client.shutdown(Shutdown::Write).map(|()| "ok"));
    let ms = millis(start.elapsed());
    let (delivered, eof) = drain(&stuck.server)?;
    rec.saw(
        "linger_shutdown",
        "shutdown(SHUT_WR): ms, result; what the peer read",
        json!({ "shutdown_ms": ms, "result": result, "written": stuck.written,
                "peer_read": delivered, "peer_eof": eof }),
    );
    // Everything is acknowledged now, so this close has nothing to wait for.
    drop(stuck.client);
    Ok(ms)
}

/// Part 5: the default close with unacknowledged data.
fn default_close(rec: &mut Recorder, listener: &TcpListener) -> io::Result<Closed> {
    let stuck = stuck(listener)?;
    let (closed, state_after) = close_and_watch(stuck)?;
    rec.saw(
        "default_close",
        "close(): ms, what it returned; the orphan after it (sock_diag); what the peer read",
        closed.value(state_after),
    );
    Ok(closed)
}
