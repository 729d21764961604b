//! `time-wait`: the side that closes first holds TIME_WAIT, and what that does to a server
//! that restarts on the same port.
//!
//! Three runs on fresh ports:
//! 1. a server whose listener was made *without* SO_REUSEADDR accepts a client and closes
//!    first; then it "restarts": the listener closes and a new socket binds the same port,
//!    once without SO_REUSEADDR and once with it;
//! 2. the same with a listener made *with* SO_REUSEADDR, as `net::listen` makes it;
//! 3. the client closes first, to see TIME_WAIT move to the client's side.
//!
//! On Linux, TIME_WAIT lasts a fixed 60 s (`TCP_TIMEWAIT_LEN` in include/net/tcp.h, a
//! constant, not a sysctl), where RFC 793 asks for 2 × MSL with an MSL of 2 minutes —
//! `net.ipv4.tcp_fin_timeout` is the orphaned FIN_WAIT2 timeout, not this one. And Linux
//! lets a new socket bind past a TIME_WAIT socket only when *both* sockets have SO_REUSEADDR:
//! the TIME_WAIT socket keeps the flag of the socket it came from, which inherited it from the
//! listener. The lab shows whether this kernel does so.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Lab, Recorder, Verdict, accept_within, bind, connect, diag, listen_exact, loopback_any,
    outcome, render, settled_state,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "time-wait",
    summary: "the side that closes first holds TIME_WAIT; rebinding with and without SO_REUSEADDR",
    claim: "the side that closes first holds TIME_WAIT; while it lasts, binding the same port \
            without SO_REUSEADDR fails with EADDRINUSE, and with SO_REUSEADDR succeeds",
    run,
};

const WAIT: Duration = Duration::from_secs(1);

/// The two ends of one connection and the addresses to find them by.
struct Pair {
    server: TcpStream,
    client: TcpStream,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
}

fn pair(listener: &TcpListener) -> io::Result<Pair> {
    let server_addr = listener.local_addr()?;
    let client = connect(server_addr)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(listener, WAIT)?;
    client.set_read_timeout(Some(WAIT))?;
    server.set_read_timeout(Some(WAIT))?;
    Ok(Pair {
        server,
        client,
        server_addr,
        client_addr,
    })
}

/// Closes `first`, waits for its FIN to reach `second` (read returns 0), closes `second`.
fn close_in_order(first: TcpStream, second: TcpStream) -> io::Result<()> {
    drop(first);
    let mut buf = [0u8; 16];
    let n = (&second).read(&mut buf)?;
    if n != 0 {
        return Err(io::Error::other("expected EOF from the side that closed"));
    }
    drop(second);
    Ok(())
}

/// The server closes first, then restarts on its port. Records under `prefix`; returns
/// (server side state, client side state, plain rebind, SO_REUSEADDR rebind).
fn server_closes_first(
    rec: &mut Recorder,
    prefix: &str,
    listener: TcpListener,
) -> io::Result<[Value; 4]> {
    let p = pair(&listener)?;
    close_in_order(p.server, p.client)?;
    settled_state(p.server_addr, p.client_addr, &["FIN_WAIT1", "FIN_WAIT2"])?;
    let entry = diag::find(p.server_addr, p.client_addr)?;
    let server_side = rec.saw(
        &format!("{prefix}server_side"),
        "server's end of the connection (it closed first)",
        entry.as_ref().map_or("gone", |s| s.state),
    );
    if let Some(s) = &entry {
        rec.saw(
            &format!("{prefix}timer"),
            "its timer, and ms until it fires",
            json!({ "timer": s.timer, "expires_ms": s.expires_ms }),
        );
    }
    let client_side = rec.saw(
        &format!("{prefix}client_side"),
        "client's end (it closed second)",
        settled_state(p.client_addr, p.server_addr, &["LAST_ACK"])?,
    );
    drop(listener);
    rec.say(format!(
        "the server restarts: its listener closes, a new socket binds {}",
        p.server_addr
    ));
    let plain = rec.saw(
        &format!("{prefix}rebind_plain"),
        "bind() without SO_REUSEADDR",
        outcome(bind(p.server_addr, false).map(|_| "ok")),
    );
    let reuse = rec.saw(
        &format!("{prefix}rebind_reuseaddr"),
        "bind() with SO_REUSEADDR, then listen()",
        outcome(bind(p.server_addr, true).and_then(|fd| listen_exact(fd, 8).map(|_| "ok"))),
    );
    Ok([server_side, client_side, plain, reuse])
}

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    rec.say("run 1: the listener has no SO_REUSEADDR; the server closes first");
    let naive = listen_exact(bind(loopback_any(), false)?, 8)?;
    let [a_server, a_client, a_plain, a_reuse] = server_closes_first(rec, "", naive)?;

    rec.say("run 2: the listener has SO_REUSEADDR (as net::listen makes it)");
    let opts = ListenOptions {
        backlog: 8,
        ..Default::default()
    };
    let careful = net::listen(loopback_any(), &opts)?;
    let [b_server, _, b_plain, b_reuse] = server_closes_first(rec, "reuse_", careful)?;

    rec.say("run 3: the client closes first");
    let listener = net::listen(loopback_any(), &opts)?;
    let p = pair(&listener)?;
    close_in_order(p.client, p.server)?;
    let c_client = rec.saw(
        "client_first_client_side",
        "client's end (it closed first)",
        settled_state(p.client_addr, p.server_addr, &["FIN_WAIT1", "FIN_WAIT2"])?,
    );
    let c_server = rec.saw(
        "client_first_server_side",
        "server's end (it closed second)",
        settled_state(p.server_addr, p.client_addr, &["LAST_ACK"])?,
    );
    rec.saw(
        "tcp_fin_timeout",
        "sysctl net.ipv4.tcp_fin_timeout (FIN_WAIT2, not TIME_WAIT)",
        super::sysctl_number("net/ipv4/tcp_fin_timeout")?,
    );

    let first_closer = a_server == "TIME_WAIT"
        && a_client == "gone"
        && b_server == "TIME_WAIT"
        && c_client == "TIME_WAIT"
        && c_server == "gone";
    let plain_fails = a_plain == "EADDRINUSE" && b_plain == "EADDRINUSE";
    let reuse_works = a_reuse == "ok" && b_reuse == "ok";
    let [a_plain, b_plain, a_reuse, b_reuse] = [&a_plain, &b_plain, &a_reuse, &b_reuse].map(render);
    let summary = format!(
        "the first closer held TIME_WAIT ({}); a plain bind gave {a_plain}/{b_plain}; with \
         SO_REUSEADDR the bind gave {a_reuse} when the old listener lacked it and {b_reuse} when \
         it had it",
        if first_closer {
            "both ways"
        } else {
            "not always"
        },
    );
    Ok(Verdict::new(
        first_closer && plain_fails && reuse_works,
        summary,
    ))
}
