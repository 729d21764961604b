//! `half-close`: shutdown(SHUT_WR) closes one direction; close() with unread data resets.
//!
//! Part one is the half-close (半关闭) a client uses to say "that was my whole request": it
//! writes, calls shutdown(SHUT_WR) — a FIN goes out — and keeps reading. The server reads the
//! request, then EOF, writes its reply into the half-closed connection, and closes; the client
//! reads the reply and then its own EOF. No RST is sent (`Tcp OutRsts` does not move).
//!
//! Part two: a server that close()s a socket whose receive queue still holds bytes it never
//! read. RFC 1122 (4.2.2.13) says it SHOULD send RST, and Linux does (`__tcp_close`, counted
//! in `TcpExt TCPAbortOnClose`), so the peer's next read fails with ECONNRESET — and any reply
//! still in flight to it can be thrown away. That is why the blocking models drain what the
//! peer sent before closing (`conn.rs`, lingering close). The counters are read in a network
//! namespace of the lab's own when it may (as root), so that they count its sockets alone.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use nix::poll::PollFlags;

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Lab, Recorder, Verdict, accept_within, connect, diag, loopback_any, outcome, poll_names,
    render, settled_state, wait_for,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "half-close",
    summary: "shutdown(SHUT_WR) sends FIN and still reads; close() with unread data sends RST",
    claim: "shutdown(SHUT_WR) sends a FIN and the socket can still read what the peer sends; \
            close() on a socket whose receive queue holds unread data sends RST instead of FIN",
    run,
};

const WAIT: Duration = Duration::from_secs(1);

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let server_addr = listener.local_addr()?;
    rec.say(format!("part one: a client of {server_addr} half-closes"));
    let before = Counters::read()?;

    let client = connect(server_addr)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(&listener, WAIT)?;
    client.set_read_timeout(Some(WAIT))?;
    server.set_read_timeout(Some(WAIT))?;
    let io_len = |r: io::Result<usize>| outcome(r.map(|n| n as u64));

    (&client).write_all(b"request")?;
    let shut = rec.saw(
        "client_shutdown",
        "client: write(\"request\"), shutdown(SHUT_WR)",
        outcome(client.shutdown(Shutdown::Write).map(|()| "ok")),
    );
    let client_state = rec.saw(
        "client_state",
        "client socket, once its FIN is acknowledged",
        settled_state(client_addr, server_addr, &["FIN_WAIT1"])?,
    );
    let server_state = rec.saw(
        "server_state",
        "server socket",
        diag::state(server_addr, client_addr)?,
    );
    let mut buf = [0u8; 64];
    let request = rec.saw(
        "server_read",
        "server: read()",
        io_len((&server).read(&mut buf)),
    );
    let eof = rec.saw(
        "server_read_eof",
        "server: read() again (the FIN)",
        io_len((&server).read(&mut buf)),
    );
    let reply = rec.saw(
        "server_write",
        "server: write(\"reply\") after the client's FIN",
        io_len((&server).write(b"reply")),
    );
    let client_read = rec.saw(
        "client_read_after_shutdown",
        "client: read() after its own shutdown",
        io_len((&client).read(&mut buf)),
    );
    drop(server);
    let client_eof = rec.saw(
        "client_read_eof",
        "server close(); client: read()",
        io_len((&client).read(&mut buf)),
    );
    rec.saw(
        "client_state_end",
        "client socket (it sent the first FIN)",
        settled_state(client_addr, server_addr, &["FIN_WAIT2"])?,
    );
    drop(client);
    let rsts_one = rec.saw(
        "part_one_rsts",
        "RSTs sent during part one (Tcp.OutRsts)",
        Counters::read()?.since(&before, "Tcp.OutRsts"),
    );

    rec.say("part two: the server closes with unread bytes in its receive queue");
    let client = connect(server_addr)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(&listener, WAIT)?;
    (&client).write_all(b"never read")?;
    wait_for(&server, PollFlags::POLLIN, WAIT)?;
    rec.saw(
        "unread",
        "server socket Recv-Q: bytes it will not read",
        diag::find(server_addr, client_addr)?.map(|s| s.recv_q),
    );
    let before = Counters::read()?;
    drop(server);
    let seen = rec.saw(
        "client_poll_after_close",
        "server close(); client: poll(POLLIN)",
        poll_names(wait_for(&client, PollFlags::POLLIN, WAIT)?),
    );
    client.set_read_timeout(Some(WAIT))?;
    let reset = rec.saw(
        "client_read_after_close",
        "client: read()",
        io_len((&client).read(&mut buf)),
    );
    let server_gone = rec.saw(
        "server_state_after_close",
        "server socket (no FIN_WAIT, no TIME_WAIT)",
        diag::state(server_addr, client_addr)?,
    );
    let after = Counters::read()?;
    let aborts = after.since(&before, "TcpExt.TCPAbortOnClose");
    let rsts = after.since(&before, "Tcp.OutRsts");
    rec.saw(
        "close_counters",
        "counters around that close: aborts for unread data, RSTs sent",
        serde_json::json!({ "TcpExt.TCPAbortOnClose": aborts, "Tcp.OutRsts": rsts }),
    );

    let half_close = shut == "ok"
        && client_state == "FIN_WAIT2"
        && server_state == "CLOSE_WAIT"
        && request == 7
        && eof == 0
        && reply == 5
        && client_read == 5
        && client_eof == 0;
    let no_rst_in_part_one = !scope.exact() || rsts_one == 0;
    let resets = reset == "ECONNRESET"
        && server_gone == "gone"
        && scope.agrees(aborts, 1)
        && scope.agrees(rsts, 1);
    let [client_state, server_state, client_read, reset, seen] =
        [&client_state, &server_state, &client_read, &reset, &seen].map(render);
    let summary = format!(
        "after shutdown(SHUT_WR) the client was {client_state}, the server {server_state}, and the \
         client still read {client_read} bytes (OutRsts +{} meanwhile); close() with unread \
         data sent an RST (TCPAbortOnClose +{aborts}, OutRsts +{rsts}, {}) and gave the peer \
         {reset} (poll: {seen})",
        render(&rsts_one),
        scope.word(),
    );
    Ok(Verdict::new(
        half_close && no_rst_in_part_one && resets,
        summary,
    ))
}
