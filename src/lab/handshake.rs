//! `handshake`: the client's connect() completes on the second segment of the three-way
//! handshake (三次握手), the server's accept() only after the third — and neither waits for
//! the other application.
//!
//! Part one: a listener that never calls accept(). The client connects, writes, and the kernel
//! keeps both the finished connection (in the accept queue, 已完成连接队列) and the bytes (in
//! that connection's Recv-Q) until accept() and read() come for them.
//!
//! Part two isolates the third segment. TCP_DEFER_ACCEPT makes the listener ignore a bare ACK
//! (a Linux option, for servers that want the first request with the connection): the client,
//! which has seen the SYN-ACK, is ESTABLISHED and its connect() has returned, while the server
//! side stays in SYN_RECV and accept() has nothing — until a segment that completes the
//! handshake for the server arrives.
//!
//! The third segment is observed, not assumed: `tcp_check_req` counts the bare ACK it drops
//! under TCP_DEFER_ACCEPT in `TcpExt TCPDeferAcceptDrop`, and `Tcp PassiveOpens` counts each
//! server-side socket made when a handshake completes (`tcp_create_openreq_child`). The lab
//! reads both in a network namespace of its own when it may (as root), so that they count its
//! connections alone.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::libc;
use nix::poll::PollFlags;

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Lab, Recorder, Verdict, accept_within, connect_nonblocking, diag, local_addr, loopback_any,
    outcome, poll_names, set_int_option, so_error, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "handshake",
    summary: "connect() succeeds before the server calls accept(); accept() needs the third segment",
    claim: "connect() returns when the SYN-ACK (the second segment) arrives; accept() returns a \
            connection only after the client's ACK (the third): a client is connected before \
            the server accepts it",
    run,
};

const WAIT: Duration = Duration::from_secs(1);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    // Part one: nobody calls accept().
    let opts = ListenOptions {
        backlog: 8,
        ..Default::default()
    };
    let listener = net::listen(loopback_any(), &opts)?;
    let server = listener.local_addr()?;
    rec.say(format!(
        "listen on {server}; the server does not call accept() yet"
    ));

    let before = Counters::read()?;
    let (client, said) = connect_nonblocking(server)?;
    rec.saw("connect", "client: nonblocking connect()", said);
    let ready = wait_for(&client, PollFlags::POLLOUT, WAIT)?;
    rec.saw(
        "connect_ready",
        "client: poll(POLLOUT), the end of its handshake",
        poll_names(ready),
    );
    let result = rec.saw(
        "connect_result",
        "client: getsockopt(SO_ERROR), connect()'s result",
        so_error(&client)?,
    );
    let client_addr = local_addr(&client)?;
    let client_state = rec.saw(
        "client_state",
        "client socket",
        diag::state(client_addr, server)?,
    );
    let server_state = rec.saw(
        "server_state",
        "server's socket for it, before any accept()",
        diag::state(server, client_addr)?,
    );
    let queued = rec.saw(
        "accept_queue",
        "listener Recv-Q: connections waiting for accept()",
        diag::listener(server)?.map(|l| l.recv_q),
    );
    let opened = rec.saw(
        "passive_opens",
        "server-side sockets made by completed handshakes (Tcp.PassiveOpens)",
        Counters::read()?.since(&before, "Tcp.PassiveOpens"),
    );

    let client = TcpStream::from(client);
    let wrote = rec.saw(
        "write_before_accept",
        "client: write(\"hello\") before the server accepts",
        outcome((&client).write(b"hello").map(|n| n as u64)),
    );
    let waiting = rec.saw(
        "bytes_before_accept",
        "server's socket Recv-Q: bytes waiting for the application",
        diag::find(server, client_addr)?.map(|s| s.recv_q),
    );
    let mut conn = accept_within(&listener, WAIT)?;
    conn.set_read_timeout(Some(WAIT))?;
    let mut buf = [0u8; 16];
    let got = rec.saw(
        "read_after_accept",
        "server: accept(), then read()",
        outcome(conn.read(&mut buf).map(|n| n as u64)),
    );

    // Part two: the listener ignores the bare third segment.
    let deferred = net::listen(loopback_any(), &opts)?;
    let deferred_addr = deferred.local_addr()?;
    set_int_option(&deferred, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)?;
    rec.say(format!(
        "listen on {deferred_addr} with TCP_DEFER_ACCEPT: the server ignores a bare ACK"
    ));
    let before = Counters::read()?;
    let (client2, _) = connect_nonblocking(deferred_addr)?;
    wait_for(&client2, PollFlags::POLLOUT, WAIT)?;
    let deferred_result = rec.saw(
        "deferred_connect_result",
        "client: connect()'s result (SO_ERROR)",
        so_error(&client2)?,
    );
    let client2_addr = local_addr(&client2)?;
    let deferred_client = rec.saw(
        "deferred_client_state",
        "client socket",
        diag::state(client2_addr, deferred_addr)?,
    );
    let deferred_server = rec.saw(
        "deferred_server_state",
        "server side, its third segment ignored",
        diag::state(deferred_addr, client2_addr)?,
    );
    // The client's ACK may still be on its way through loopback: give it a moment.
    let deadline = std::time::Instant::now() + WAIT;
    let counted = loop {
        let now = Counters::read()?;
        if now.since(&before, "TcpExt.TCPDeferAcceptDrop") > 0
            || std::time::Instant::now() >= deadline
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let dropped = counted.since(&before, "TcpExt.TCPDeferAcceptDrop");
    let opened_early = counted.since(&before, "Tcp.PassiveOpens");
    rec.saw(
        "deferred_counters",
        "the bare ACK dropped (TCPDeferAcceptDrop); server sockets made (PassiveOpens)",
        serde_json::json!({ "TcpExt.TCPDeferAcceptDrop": dropped, "Tcp.PassiveOpens": opened_early }),
    );
    deferred.set_nonblocking(true)?;
    let early = rec.saw(
        "deferred_accept",
        "server: accept() (nonblocking)",
        outcome(deferred.accept().map(|_| "ok")),
    );
    let client2 = TcpStream::from(client2);
    (&client2).write_all(b"GET")?;
    let readable = wait_for(&deferred, PollFlags::POLLIN, WAIT)?;
    rec.saw(
        "deferred_listener_after_data",
        "client writes; poll(listener)",
        poll_names(readable),
    );
    let late = rec.saw(
        "deferred_accept_after_data",
        "server: accept() again",
        outcome(deferred.accept().map(|_| "ok")),
    );
    let opened_late = rec.saw(
        "deferred_passive_opens",
        "server sockets made since the connect, now (Tcp.PassiveOpens)",
        Counters::read()?.since(&before, "Tcp.PassiveOpens"),
    );

    let part_one = result == "0"
        && client_state == "ESTABLISHED"
        && server_state == "ESTABLISHED"
        && queued == 1
        && wrote == 5
        && waiting == 5
        && got == 5
        && scope.agrees(opened.as_u64().unwrap_or(0), 1);
    let part_two = deferred_result == "0"
        && deferred_client == "ESTABLISHED"
        && deferred_server == "SYN_RECV"
        && early == "EAGAIN"
        && late == "ok"
        && scope.agrees(dropped, 1)
        && (!scope.exact() || opened_early == 0)
        && scope.agrees(opened_late.as_u64().unwrap_or(0), 1);
    let summary = if part_one && part_two {
        format!(
            "the client was ESTABLISHED and had written 5 bytes before any accept() (PassiveOpens \
             +{}); with TCP_DEFER_ACCEPT the third segment arrived and was dropped \
             (TCPDeferAcceptDrop +{dropped}, {}), the client still connected while the server sat \
             in SYN_RECV with nothing to accept (PassiveOpens +{opened_early}), and the first data \
             segment completed it (PassiveOpens +{})",
            super::render(&opened),
            scope.word(),
            super::render(&opened_late),
        )
    } else {
        format!(
            "unexpected: connect {result}, client {client_state}, server {server_state}, queue \
             {queued}; deferred: client {deferred_client}, server {deferred_server}, accept \
             {early} then {late}"
        )
    };
    Ok(Verdict::new(part_one && part_two, summary))
}
