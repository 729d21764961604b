//! `keepalive`: finding out that a peer has vanished without a FIN, with TCP keepalive and
//! with the application's own heartbeat (心跳包) or idle timeout.
//!
//! A peer that loses power or network sends nothing: no FIN, no RST. A server blocked in
//! read() on its connection waits forever, holding a descriptor, a buffer, perhaps a thread.
//! SO_KEEPALIVE makes the kernel probe an idle connection and fail it with ETIMEDOUT when
//! `TCP_KEEPCNT` probes in a row go unanswered — but by default only after two hours of
//! silence (`net.ipv4.tcp_keepalive_time` 7200 s, then 9 probes 75 s apart). The per-socket
//! options TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT shorten that.
//!
//! To make a peer vanish for real the lab builds two network namespaces joined by a veth pair
//! (a private /30 that exists only inside them), connects across it, then sets the client's
//! link down. That needs root and `ip` from iproute2; without them the lab says why and shows
//! what loopback can: the keepalive timer armed on the socket, and probes a live peer answers.
//! The namespaces are removed on every way out (error, panic, SIGINT).
//!
//! The verdict checks the timing against the formula, from the last segment the server
//! received, and the namespace's `TcpExt TCPKeepAlive` counter for the probes sent.
//!
//! Servers rarely rely on TCP keepalive alone: they close connections idle for longer than a
//! limit and let clients that want to stay send heartbeats. The lab's second half runs
//! `server-models serve iterative --idle-timeout 0.5` and shows both: heartbeats every 200 ms
//! keep a connection open past the timeout, and silence gets it closed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::sys::socket::{self, sockopt};
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::{CLIENT_LINK, Namespaces, SERVER_IP, ip};
use super::{
    Lab, Recorder, Verdict, abort, accept_within, connect_nonblocking, describe_exit, diag,
    loopback_any, millis, netns, outcome, poll_names, read_once, render, sysctl_number, wait_for,
};
use crate::harness::spawn::{ServerProcess, serve_command};
use crate::server::net::{self, ListenOptions};
use crate::server::protocol::Protocol;
use crate::server::shutdown::Shutdown;

/// The lab.
pub const LAB: Lab = Lab {
    name: "keepalive",
    summary: "a peer gone without a FIN: TCP keepalive probes, and the heartbeat servers use instead",
    claim: "a peer that vanishes without a FIN is detected by SO_KEEPALIVE only after \
            keepidle + keepcnt × keepintvl (2 h 11 min by default), when read() fails with \
            ETIMEDOUT; without keepalive the connection stays ESTABLISHED forever, which is why \
            servers add an idle timeout and clients a heartbeat",
    run,
};

/// The short keepalive settings: probe after 1 s of silence, every 1 s, give up after 2.
const KEEPIDLE: u32 = 1;
const KEEPINTVL: u32 = 1;
const KEEPCNT: u32 = 2;
/// How long to wait for keepalive to give up: twice what the settings promise.
const DETECT_WITHIN: Duration = Duration::from_secs(2 * (KEEPIDLE + KEEPCNT * KEEPINTVL) as u64);
const WAIT: Duration = Duration::from_secs(2);
/// How much later than idle + cnt × intvl the failure may be seen and still count as on time.
const FORMULA_SLACK_MS: u64 = 1000;

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let shutdown = Shutdown::install()?;
    let idle = sysctl_number("net/ipv4/tcp_keepalive_time")?;
    let intvl = sysctl_number("net/ipv4/tcp_keepalive_intvl")?;
    let probes = sysctl_number("net/ipv4/tcp_keepalive_probes")?;
    rec.saw(
        "defaults",
        "sysctl tcp_keepalive_time / _intvl / _probes (s, s, count)",
        json!({ "time": idle, "intvl": intvl, "probes": probes, "detection_s": idle + intvl * probes }),
    );

    let dead_peer = match netns::unavailable() {
        None => {
            rec.saw("mode", "how the peer is made to vanish", "netns");
            let namespaces = Namespaces::create(rec)?;
            dead_peer(rec, &namespaces, &shutdown)?
        }
        Some(reason) => {
            rec.saw("mode", "how the peer is made to vanish", "fallback");
            rec.saw(
                "fallback_reason",
                "why the dead-peer half cannot run here",
                reason.clone(),
            );
            live_peer(rec, &shutdown)?;
            Err(reason)
        }
    };
    let heartbeat = heartbeat(rec, &shutdown)?;

    let held = dead_peer.is_ok() && heartbeat;
    let heartbeat_line = if heartbeat {
        "heartbeats every 200 ms kept a connection past a 0.5 s idle timeout, and silence got it \
         closed"
    } else {
        "the heartbeat and idle timeout did not behave as described"
    };
    let summary = match dead_peer {
        Ok(line) => format!("{line}; {heartbeat_line}"),
        Err(reason) => format!(
            "dead-peer detection not shown ({reason}); on loopback the keepalive timer was armed \
             and a live peer answered the probes; {heartbeat_line}"
        ),
    };
    Ok(Verdict::new(held, summary))
}

/// The kernel's count of keepalive probes sent (TcpExt TCPKeepAlive) in this thread's
/// namespace.
fn keepalive_probes_sent() -> io::Result<u64> {
    let counters = Counters::read()?;
    if !counters.has("TcpExt.TCPKeepAlive") {
        return Err(io::Error::other(
            "no TCPKeepAlive counter in /proc/net/netstat",
        ));
    }
    Ok(counters.get("TcpExt.TCPKeepAlive"))
}

/// SO_KEEPALIVE with the short settings; returns them as the kernel reads them back.
fn set_keepalive(stream: &TcpStream) -> io::Result<Value> {
    socket::setsockopt(stream, sockopt::KeepAlive, &true)?;
    socket::setsockopt(stream, sockopt::TcpKeepIdle, &KEEPIDLE)?;
    socket::setsockopt(stream, sockopt::TcpKeepInterval, &KEEPINTVL)?;
    socket::setsockopt(stream, sockopt::TcpKeepCount, &KEEPCNT)?;
    Ok(json!({
        "keepalive": socket::getsockopt(stream, sockopt::KeepAlive)?,
        "idle": socket::getsockopt(stream, sockopt::TcpKeepIdle)?,
        "intvl": socket::getsockopt(stream, sockopt::TcpKeepInterval)?,
        "cnt": socket::getsockopt(stream, sockopt::TcpKeepCount)?,
    }))
}

/// Fails if SIGINT or SIGTERM arrived, so that the namespaces are removed on the way out.
fn check(shutdown: &Shutdown) -> io::Result<()> {
    if shutdown.requested() {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

/// The peer vanishes; keepalive finds out. Returns the verdict's line, or why it failed.
fn dead_peer(
    rec: &mut Recorder,
    ns: &Namespaces,
    shutdown: &Shutdown,
) -> io::Result<Result<String, String>> {
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    let bind_at: SocketAddr = format!("{SERVER_IP}:0")
        .parse()
        .map_err(|_| io::Error::other("bad server address"))?;
    let listener = ns.inside(srv, || net::listen(bind_at, &ListenOptions::default()))?;
    let server_addr = listener.local_addr()?;
    let (watched, quiet) = ns.inside(cli, || {
        Ok((
            connect_nonblocking(server_addr)?.0,
            connect_nonblocking(server_addr)?.0,
        ))
    })?;
    wait_for(&watched, PollFlags::POLLOUT, WAIT)?;
    wait_for(&quiet, PollFlags::POLLOUT, WAIT)?;
    let with_keepalive = accept_within(&listener, WAIT)?;
    let without = accept_within(&listener, WAIT)?;
    let watched = TcpStream::from(watched);
    let client_addr = watched.local_addr()?;
    rec.say(format!(
        "{client_addr} in {cli} connected twice to {server_addr} in {srv}"
    ));

    let options = rec.saw(
        "options",
        "server: SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT, read back",
        set_keepalive(&with_keepalive)?,
    );
    (&watched).write_all(b"ping")?;
    with_keepalive.set_read_timeout(Some(WAIT))?;
    (&with_keepalive).read_exact(&mut [0u8; 4])?;
    // The keepalive timer counts idle time from the last segment received
    // (`keepalive_time_elapsed` in include/net/tcp.h): that is when the formula starts.
    let last_data = Instant::now();
    let before = ns.inside(srv, keepalive_probes_sent)?;
    let armed = ns.inside(srv, || diag::find(server_addr, client_addr))?;
    rec.saw(
        "timer",
        "server socket's timer after a last exchange",
        armed.map(|s| json!({ "timer": s.timer, "expires_ms": s.expires_ms })),
    );

    ip(&["-n", cli, "link", "set", CLIENT_LINK, "down"])?;
    rec.say("the client's link goes down: no FIN, no RST, nothing more from it");
    let start = Instant::now();
    let mut most_probes = 0u8;
    let flags = loop {
        check(shutdown)?;
        let flags = wait_for(
            &with_keepalive,
            PollFlags::POLLIN,
            Duration::from_millis(200),
        )?;
        if !flags.is_empty() || start.elapsed() >= DETECT_WITHIN {
            break flags;
        }
        if let Some(s) = ns.inside(srv, || diag::find(server_addr, client_addr))? {
            most_probes = most_probes.max(s.retrans);
        }
    };
    let after = millis(start.elapsed());
    let since_data = millis(last_data.elapsed());
    let formula_ms = u64::from(KEEPIDLE + KEEPCNT * KEEPINTVL) * 1000;
    rec.saw(
        "detected",
        "server: poll(POLLIN) until the kernel gives up",
        json!({ "poll": poll_names(flags), "after_ms": after, "since_last_data_ms": since_data,
                "formula_ms": formula_ms }),
    );
    rec.saw(
        "probes_out_seen",
        "unanswered probes seen in sock_diag while waiting",
        most_probes,
    );
    with_keepalive.set_nonblocking(true)?;
    let error = rec.saw("read", "server: read()", read_once(&with_keepalive));
    let sent = ns.inside(srv, keepalive_probes_sent)? - before;
    rec.saw(
        "probes_sent",
        "keepalive probes the server's namespace sent (TcpExt TCPKeepAlive)",
        sent,
    );
    let quiet_state = rec.saw(
        "without_keepalive",
        "server's other connection, no SO_KEEPALIVE",
        ns.inside(srv, || diag::state(server_addr, without.peer_addr()?))?,
    );
    let client_state = rec.saw(
        "client_state",
        "the client's socket, in its own namespace",
        ns.inside(cli, || diag::state(client_addr, server_addr))?,
    );

    for stream in [with_keepalive, without, watched, TcpStream::from(quiet)] {
        abort(stream)?;
    }
    drop(listener);

    let shortened = options["idle"] == KEEPIDLE && options["cnt"] == KEEPCNT;
    // idle + cnt × intvl, from the last segment: not sooner (less one 4 ms tick of slack), and
    // not much later (the lab polls every 200 ms; timers fire on jiffies).
    let on_time = since_data + 100 >= formula_ms && since_data <= formula_ms + FORMULA_SLACK_MS;
    let [error, quiet_state, client_state] = [&error, &quiet_state, &client_state].map(render);
    if shortened
        && error == "ETIMEDOUT"
        && sent == u64::from(KEEPCNT)
        && on_time
        && quiet_state == "ESTABLISHED"
    {
        Ok(Ok(format!(
            "keepalive ({KEEPIDLE} s idle, {KEEPCNT} probes {KEEPINTVL} s apart) failed the \
             connection with {error} {since_data} ms after the last segment (idle + cnt × intvl \
             = {formula_ms} ms, within −100/+{FORMULA_SLACK_MS} ms) having sent {sent} probes \
             (TCPKeepAlive); without keepalive it stayed {quiet_state}, and the client still \
             thinks it is {client_state}"
        )))
    } else {
        Ok(Err(format!(
            "keepalive gave read() {error} {since_data} ms after the last segment (formula \
             {formula_ms} ms) with {sent} probes; the connection without keepalive was \
             {quiet_state}"
        )))
    }
}

/// The fallback on loopback: the keepalive timer armed, and probes a live peer answers.
fn live_peer(rec: &mut Recorder, shutdown: &Shutdown) -> io::Result<()> {
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    let server_addr = listener.local_addr()?;
    let client = super::connect(server_addr)?;
    let client_addr = client.local_addr()?;
    let server = accept_within(&listener, WAIT)?;
    rec.saw(
        "options",
        "server: SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT, read back",
        set_keepalive(&server)?,
    );
    let armed = diag::find(server_addr, client_addr)?;
    rec.saw(
        "timer",
        "server socket's timer",
        armed.map(|s| json!({ "timer": s.timer, "expires_ms": s.expires_ms })),
    );
    let before = keepalive_probes_sent()?;
    // Long enough for two probes at one per second of silence.
    let quiet = Duration::from_millis(2500);
    let start = Instant::now();
    while start.elapsed() < quiet {
        check(shutdown)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    rec.saw(
        "probes_sent_here",
        format!("keepalive probes sent in this namespace over {quiet:?} (all sockets)"),
        keepalive_probes_sent()?.saturating_sub(before),
    );
    rec.saw(
        "state_after",
        "server socket after the probes (answered by the live peer)",
        diag::state(server_addr, client_addr)?,
    );
    Ok(())
}

/// `serve --idle-timeout`: heartbeats keep a connection, silence loses it. Returns whether
/// both happened.
fn heartbeat(rec: &mut Recorder, shutdown: &Shutdown) -> io::Result<bool> {
    let exe = std::env::current_exe()?;
    let mut command = serve_command(
        &exe,
        "iterative",
        Protocol::Echo,
        &["--idle-timeout", "0.5"],
    );
    // SAFETY: the closure runs in the child between fork and exec and only makes prctl(2), which
    // is async-signal-safe. If this process is killed outright, the server is told with SIGTERM
    // instead of serving on as an orphan.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            Ok(())
        });
    }
    let mut server = ServerProcess::start_command(command)?;
    let result = heartbeat_against(rec, shutdown, server.addr());
    // Stop the server we started: SIGTERM, a bounded wait, SIGKILL if it did not go.
    let exit = server.stop();
    let exited = result?;
    rec.saw(
        "server_exit",
        "the server after SIGTERM",
        match exit {
            Ok(status) => describe_exit(status),
            Err(e) => e.to_string(),
        },
    );
    Ok(exited)
}

fn heartbeat_against(
    rec: &mut Recorder,
    shutdown: &Shutdown,
    addr: SocketAddr,
) -> io::Result<bool> {
    rec.say(format!(
        "started `serve iterative --idle-timeout 0.5` on {addr}"
    ));
    let conn = super::connect(addr)?;
    conn.set_read_timeout(Some(WAIT))?;
    let beats = 5;
    let mut answered = 0;
    for beat in 0..beats {
        check(shutdown)?;
        if beat > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        (&conn).write_all(b"ping\n")?;
        let mut echo = [0u8; 5];
        if (&conn).read_exact(&mut echo).is_ok() && &echo == b"ping\n" {
            answered += 1;
        }
    }
    rec.saw(
        "heartbeats",
        "client: a heartbeat every 200 ms for 0.8 s, each echoed",
        json!({ "sent": beats, "answered": answered }),
    );
    let start = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    let read = outcome((&conn).read(&mut [0u8; 16]).map(|n| n as u64));
    let after = millis(start.elapsed());
    let closed = rec.saw(
        "idle_close",
        "client: silence after the last echo; read() until the server closes",
        json!({ "read": read, "after_ms": after }),
    );
    Ok(answered == beats && closed["read"] == 0)
}
