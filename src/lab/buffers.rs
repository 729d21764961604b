//! `buffers`: where the bytes wait when the peer stops reading.
//!
//! The receiver's SO_RCVBUF and the sender's SO_SNDBUF are set small, the receiver never
//! reads, and the sender writes 4 KiB at a time on a nonblocking socket until the kernel says
//! EAGAIN. The bytes written are then all accounted for: the receiver's Recv-Q (delivered, not
//! read) plus the sender's Send-Q (not yet acknowledged — the receiver's window is closed). A
//! blocking write would sleep here (shown with SO_SNDTIMEO as a bound); once the receiver reads,
//! the sender turns writable again. That is backpressure, and why every model here stops
//! reading from a client whose replies it cannot send.
//!
//! Linux doubles the value given to SO_SNDBUF and SO_RCVBUF "to allow space for bookkeeping
//! overhead" (socket(7)), and a socket given SO_RCVBUF no longer has its receive buffer tuned
//! automatically: setting it sets SOCK_RCVBUF_LOCK, which `tcp_rcv_space_adjust` (the
//! `net.ipv4.tcp_moderate_rcvbuf` autotuning) leaves alone.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{self, sockopt};
use serde_json::json;

use super::{
    Filled, Lab, Recorder, Verdict, accept_within, connect_nonblocking, diag, fill, loopback_any,
    millis, outcome, poll_names, render, sysctl, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "buffers",
    summary: "a peer that stops reading: EAGAIN, and the Send-Q / Recv-Q where the bytes wait",
    claim: "when the peer stops reading, its receive buffer fills, then the sender's send \
            buffer, then a nonblocking write fails with EAGAIN (a blocking one blocks); the \
            bytes wait in the receiver's Recv-Q and the sender's Send-Q, bounded by \
            SO_RCVBUF and SO_SNDBUF",
    run,
};

const ASKED: usize = 16 * 1024;
const CHUNK: usize = 4 * 1024;
/// More than any buffer this lab sets up could hold: a safety stop for the write loop.
const WRITE_LIMIT: usize = 64 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(1);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    rec.saw(
        "tcp_rmem",
        "sysctl net.ipv4.tcp_rmem (min default max)",
        sysctl("net/ipv4/tcp_rmem")?,
    );
    rec.saw(
        "tcp_wmem",
        "sysctl net.ipv4.tcp_wmem (min default max)",
        sysctl("net/ipv4/tcp_wmem")?,
    );

    // SO_RCVBUF on the listener, before the handshake: the accepted socket inherits it and
    // the window it advertises is sized from it.
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    socket::setsockopt(&listener, sockopt::RcvBuf, &ASKED)?;
    let server_addr = listener.local_addr()?;
    let (writer, _) = connect_nonblocking(server_addr)?;
    socket::setsockopt(&writer, sockopt::SndBuf, &ASKED)?;
    wait_for(&writer, PollFlags::POLLOUT, WAIT)?;
    let reader = accept_within(&listener, WAIT)?;
    let rcvbuf = socket::getsockopt(&reader, sockopt::RcvBuf)?;
    let sndbuf = socket::getsockopt(&writer, sockopt::SndBuf)?;
    rec.saw(
        "rcvbuf",
        format!("receiver: SO_RCVBUF set to {ASKED}, read back"),
        rcvbuf,
    );
    rec.saw(
        "sndbuf",
        format!("sender: SO_SNDBUF set to {ASKED}, read back"),
        sndbuf,
    );

    let writer = TcpStream::from(writer);
    let writer_addr = writer.local_addr()?;
    let chunk = [b'x'; CHUNK];
    let Filled {
        written,
        first_eagain,
        stopped,
    } = fill(&writer, &chunk, WRITE_LIMIT)?;
    rec.saw(
        "write_until_full",
        "sender: nonblocking write(4 KiB) until it stays unwritable",
        json!({ "written": written, "first_eagain_at": first_eagain, "then": stopped }),
    );

    // The last bytes written may still be crossing loopback: let the queues settle.
    let deadline = Instant::now() + WAIT;
    let (send_q, recv_q) = loop {
        let send_q = diag::find(writer_addr, server_addr)?.map_or(0, |s| s.send_q);
        let recv_q = diag::find(server_addr, writer_addr)?.map_or(0, |s| s.recv_q);
        if send_q as usize + recv_q as usize == written || Instant::now() >= deadline {
            break (send_q, recv_q);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    rec.saw(
        "sender_send_q",
        "sender Send-Q: written, not yet acknowledged",
        send_q,
    );
    rec.saw(
        "receiver_recv_q",
        "receiver Recv-Q: delivered, not yet read",
        recv_q,
    );
    let accounted = send_q as usize + recv_q as usize;
    rec.saw(
        "accounted",
        "Send-Q + Recv-Q, against the bytes written",
        json!({ "sum": accounted, "written": written }),
    );
    let stuck = rec.saw(
        "writable_while_full",
        "sender: poll(POLLOUT) for 100 ms more",
        poll_names(wait_for(
            &writer,
            PollFlags::POLLOUT,
            Duration::from_millis(100),
        )?),
    );
    writer.set_nonblocking(false)?;
    writer.set_write_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let blocked = outcome((&writer).write(&chunk).map(|n| n as u64));
    rec.saw(
        "blocking_write",
        "sender: blocking write() (bounded by SO_SNDTIMEO 200 ms)",
        json!({ "result": blocked, "blocked_ms": millis(start.elapsed()) }),
    );

    // The receiver drains everything; the sender can write again.
    reader.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while drained < written {
        match (&reader).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    rec.saw("drained", "receiver: read() everything", drained);
    let free = rec.saw(
        "writable_after_drain",
        "sender: poll(POLLOUT)",
        poll_names(wait_for(&writer, PollFlags::POLLOUT, WAIT)?),
    );

    let full = stopped == "EAGAIN" && stuck.as_array().is_some_and(Vec::is_empty);
    let bounded = written <= rcvbuf + sndbuf;
    let held = full
        && accounted == written
        && bounded
        && drained == written
        && free
            .as_array()
            .is_some_and(|a| a.iter().any(|f| f == "POLLOUT"));
    let stopped = render(&stopped);
    let summary = format!(
        "{written} bytes written before {stopped}, all waiting: Send-Q {send_q} + Recv-Q \
         {recv_q}; SO_SNDBUF/SO_RCVBUF {ASKED} read back as {sndbuf}/{rcvbuf} (Linux doubles \
         them); writable again after the receiver read"
    );
    Ok(Verdict::new(held, summary))
}
