//! `peer-gone`: the server's host vanishes while the client's data is unacknowledged, and
//! the server's host crashes and comes back.
//!
//! Two namespaces joined by a veth pair. To make the server's host vanish the lab takes its
//! address away: every segment the client sends still crosses the wire and is discarded on
//! arrival (not for this host, no forwarding: the server's `Ip.InAddrErrors` counts them), and
//! nothing comes back — no FIN, no RST (复位), no ICMP. (Setting the link down instead would
//! take the carrier from the client's end of the veth too, and the client's own transmissions
//! would then fail locally, which TCP handles differently from silence: it retries a local
//! failure without backing off.) The client has just written a request and blocks in
//! read() for the reply, as a client does. Its kernel retransmits the unacknowledged segment,
//! doubling the retransmission timeout (RTO) each time, until it gives up: after
//! `net.ipv4.tcp_retries2` (set to 2 inside the client's namespace, so it ends in seconds, not
//! the quarter of an hour the default 15 gives), or after `TCP_USER_TIMEOUT` on a second
//! connection. The lab reads each connection's
//! `tcp_info` through sock_diag every 10 ms — retransmissions, backoff, RTO — and the
//! namespace's counters (`TCPTimeouts`, `TCPLossProbes`, `TCPAbortOnTimeout`) before and after.
//! What the blocked read() returns is what the application learns.
//!
//! On Linux, tcp_retries2 is not a count. `tcp_write_timeout` (net/ipv4/tcp_timer.c) turns it
//! into a time: the time `tcp_retries2` retransmissions would take with an RTO starting at
//! TCP_RTO_MIN (200 ms) and doubling, `(2^(N+1) − 1) × 200 ms` for small N, counted from the
//! first retransmission; the connection is dropped at the first timer expiry past it. How many
//! retransmissions fit depends on the RTO the connection really had.
//!
//! `TCP_USER_TIMEOUT` is counted from the same first retransmission (`retrans_stamp`, "stamp of
//! the first (attempted) retransmit", net/ipv4/tcp_output.c), not from the first transmission.
//!
//! The second half is the crashed-and-rebooted host: with the server's address gone, the server
//! socket is destroyed (an abortive close, whose RST cannot leave) — the host forgot the
//! connection without telling anyone. The address comes back, the client writes, and the
//! server's kernel, which has no socket for that segment, answers with an RST: the client's
//! next read() fails with ECONNRESET.
//!
//! Each side's neighbour entry for the other is pinned first ([`Namespaces::pin_neighbours`]):
//! a host without its address answers no ARP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{self, sockopt};
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::{self, Namespaces, SERVER_IP, SERVER_LINK, check, pause};
use super::{
    Lab, Recorder, Verdict, abort, accept_within, diag, millis, outcome, poll_names, render,
    wait_for,
};
use crate::server::shutdown::Shutdown;

/// The lab.
pub const LAB: Lab = Lab {
    name: "peer-gone",
    summary: "the server's host vanishes with data unacknowledged; then it crashes and reboots",
    claim: "when the peer's host vanishes, the sender retransmits its unacknowledged data with a \
            doubling timeout until it has retransmitted tcp_retries2 times, and a read() blocked \
            on the socket then fails with ETIMEDOUT (TCP_USER_TIMEOUT bounds the time instead); \
            a peer that crashed and rebooted answers the next segment with RST, and the call \
            gets ECONNRESET",
    run,
};

/// tcp_retries2 inside the client's namespace.
const RETRIES2: u32 = 2;
/// TCP_USER_TIMEOUT on the second connection, in milliseconds.
const USER_TIMEOUT_MS: u32 = 1000;
/// TCP_RTO_MIN, the RTO the kernel's time model for tcp_retries2 starts from.
const RTO_MIN_MS: u64 = 200;
/// How long a blocked read may wait before the lab stops it: the kernel's limit is seconds.
const READ_BOUND: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(2);

/// The client's counters the lab reports.
const CLIENT_KEYS: [&str; 5] = [
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPLossProbes",
    "TcpExt.TCPAbortOnTimeout",
    "Tcp.RetransSegs",
    "Tcp.EstabResets",
];
/// The server's, for the crash.
const SERVER_KEYS: [&str; 3] = ["Tcp.OutRsts", "TcpExt.TCPAbortOnData", "Ip.InAddrErrors"];

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    netns::needed()?;
    let shutdown = Shutdown::install()?;
    let ns = Namespaces::create(rec)?;
    let cli = ns.client.as_str();
    let retries2 = ns.set_sysctl(cli, "net/ipv4/tcp_retries2", &RETRIES2.to_string())?;
    rec.saw(
        "settings",
        "client namespace: tcp_retries2 (set), tcp_retries1, tcp_rto_min_us",
        json!({
            "tcp_retries2": retries2,
            "tcp_retries1": ns.sysctl(cli, "net/ipv4/tcp_retries1")?,
            "tcp_rto_min_us": ns.sysctl(cli, "net/ipv4/tcp_rto_min_us").unwrap_or_default(),
        }),
    );
    ns.pin_neighbours()?;
    rec.say(
        "neighbour entries pinned (nud permanent): a vanished host means silence, not ARP failure",
    );

    let vanished = vanished(rec, &ns, &shutdown)?;
    let rebooted = rebooted(rec, &ns, &shutdown)?;

    let model_ms = ((2u64 << RETRIES2) - 1) * RTO_MIN_MS;
    let held = vanished.read == "ETIMEDOUT"
        && vanished.retransmissions == u64::from(RETRIES2)
        && vanished.doubled
        && vanished.user_read == "ETIMEDOUT"
        && rebooted == "ECONNRESET";
    let summary = format!(
        "with tcp_retries2 = {RETRIES2} the blocked read() got {} after {} ms, after a tail loss \
         probe (TCPLossProbes +{} over the two connections) and {} retransmission timeouts, the RTO {} each time \
         (TCPAbortOnTimeout +{}; tcp_retries2 is a time, not a count: {model_ms} ms from the \
         first timeout, what {RETRIES2} retransmissions from a 200 ms RTO and the wait after \
         them would take); with TCP_USER_TIMEOUT \
         {USER_TIMEOUT_MS} ms the read got {} after {} ms; the server's host discarded {} \
         segments (Ip.InAddrErrors) and its sockets stayed {}; after the crash and reboot the \
         server answered the next segment with an RST and the client's read() got {}",
        vanished.read,
        vanished.read_ms,
        vanished.probes,
        vanished.retransmissions,
        if vanished.doubled {
            "doubling"
        } else {
            "not doubling"
        },
        vanished.aborted,
        vanished.user_read,
        vanished.user_read_ms,
        vanished.discarded,
        vanished.server_state,
        rebooted,
    );
    Ok(Verdict::new(held, summary))
}

/// One client connection across the veth pair and its server side.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
}

/// Connects a client to `listener` from the client's namespace and swaps a request and a
/// reply, so that the connection has measured its round trip.
fn connected(ns: &Namespaces, listener: &std::net::TcpListener) -> io::Result<Conn> {
    let server_addr = listener.local_addr()?;
    let client = ns.inside(&ns.client, || super::connect(server_addr))?;
    let server = accept_within(listener, WAIT)?;
    client.set_read_timeout(Some(WAIT))?;
    server.set_read_timeout(Some(WAIT))?;
    (&client).write_all(b"hello")?;
    (&server).read_exact(&mut [0u8; 5])?;
    (&server).write_all(b"hi")?;
    (&client).read_exact(&mut [0u8; 2])?;
    Ok(Conn {
        client_addr: client.local_addr()?,
        client,
        server,
        server_addr,
    })
}

/// What the vanished-host half found.
struct Vanished {
    read: String,
    read_ms: u64,
    probes: u64,
    retransmissions: u64,
    doubled: bool,
    aborted: u64,
    user_read: String,
    user_read_ms: u64,
    discarded: u64,
    server_state: String,
}

/// A blocked read on `stream`: what it returned and after how long.
fn blocked_read(stream: &TcpStream) -> (Value, u64) {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let result = outcome((&*stream).read(&mut buf).map(|n| n as u64));
    (result, millis(start.elapsed()))
}

/// The retransmissions seen on one connection: a sample each time `total_retrans` went up.
#[derive(Default)]
struct Watch {
    events: Vec<Value>,
    last_total: u32,
    rtos: Vec<u32>,
    timeouts: u64,
}

impl Watch {
    fn sample(&mut self, info: &diag::TcpInfo, at: Duration) {
        if info.total_retrans > self.last_total {
            self.last_total = info.total_retrans;
            self.rtos.push(info.rto_us / 1000);
            // A retransmission timeout doubles the timer (backoff goes up); a tail loss probe,
            // sent before the first timeout, does not.
            let kind = if info.backoff == 0 {
                "loss probe"
            } else {
                "timeout"
            };
            if info.backoff > 0 {
                self.timeouts += 1;
            }
            self.events.push(json!({
                "kind": kind,
                "after_ms": millis(at),
                "total_retrans": info.total_retrans,
                "backoff": info.backoff,
                "rto_ms": info.rto_us / 1000,
                "unacked": info.unacked,
            }));
        }
    }

    /// Whether each RTO after a timeout was twice the one before, within a millisecond.
    fn doubled(&self) -> bool {
        self.rtos.len() >= 2 && self.rtos.windows(2).all(|w| w[1].abs_diff(2 * w[0]) <= 2)
    }
}

fn vanished(rec: &mut Recorder, ns: &Namespaces, shutdown: &Shutdown) -> io::Result<Vanished> {
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    let listener = ns.listen()?;
    let plain = connected(ns, &listener)?;
    let bounded = connected(ns, &listener)?;
    socket::setsockopt(&bounded.client, sockopt::TcpUserTimeout, &USER_TIMEOUT_MS)?;
    rec.say(format!(
        "two connections {} and {} -> {}; request and reply swapped on each; the second has \
         TCP_USER_TIMEOUT {USER_TIMEOUT_MS} ms",
        plain.client_addr, bounded.client_addr, plain.server_addr
    ));
    let info = ns.inside(cli, || diag::tcp_info(plain.client_addr, plain.server_addr))?;
    rec.saw(
        "before",
        "client's tcp_info before: srtt, RTO (µs)",
        info.map(|i| json!({ "rtt_us": i.rtt_us, "rto_us": i.rto_us })),
    );

    let before = ns.counters(cli)?;
    let server_before = ns.counters(srv)?;
    ns.ip(srv, &["addr", "del", &server_cidr(), "dev", SERVER_LINK])?;
    rec.say("the server's host vanishes (its address removed): what arrives is discarded, nothing comes back");
    let start = Instant::now();
    for conn in [&plain, &bounded] {
        conn.client.set_read_timeout(Some(READ_BOUND))?;
    }
    let wrote = outcome((&plain.client).write(b"request").map(|n| n as u64));
    let wrote_bounded = outcome((&bounded.client).write(b"request").map(|n| n as u64));
    rec.saw(
        "write",
        "client: write(\"request\") on each, just after the host vanished",
        json!([wrote, wrote_bounded]),
    );

    let mut watches = [Watch::default(), Watch::default()];
    let ((read, read_ms), (user_read, user_read_ms)) = std::thread::scope(|scope| {
        let a = scope.spawn(|| blocked_read(&plain.client));
        let b = scope.spawn(|| blocked_read(&bounded.client));
        let mut sampling = Ok(());
        while !(a.is_finished() && b.is_finished()) {
            if let Err(e) = check(shutdown) {
                // Unblock the readers: the namespaces go on the way out.
                let _ = plain.client.shutdown(std::net::Shutdown::Both);
                let _ = bounded.client.shutdown(std::net::Shutdown::Both);
                sampling = Err(e);
                break;
            }
            for (watch, conn) in watches.iter_mut().zip([&plain, &bounded]) {
                match ns.inside(cli, || diag::tcp_info(conn.client_addr, conn.server_addr)) {
                    Ok(Some(info)) => watch.sample(&info, start.elapsed()),
                    Ok(None) => {}
                    Err(e) => sampling = Err(e),
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let joined = |h: std::thread::ScopedJoinHandle<'_, (Value, u64)>| {
            h.join()
                .unwrap_or_else(|_| (Value::from("reader panicked"), 0))
        };
        let results = (joined(a), joined(b));
        sampling.map(|()| results)
    })?;
    let [plain_watch, bounded_watch] = watches;
    rec.saw(
        "retransmissions",
        "tcp_retries2 connection: each retransmission seen in tcp_info (ms after the write)",
        Value::from(plain_watch.events.clone()),
    );
    rec.saw(
        "read",
        "its blocked read(): what it returned, ms after the write",
        json!({ "result": read, "after_ms": read_ms }),
    );
    rec.saw(
        "user_timeout_retransmissions",
        "TCP_USER_TIMEOUT connection: each retransmission seen",
        Value::from(bounded_watch.events.clone()),
    );
    rec.saw(
        "user_timeout_read",
        "its blocked read()",
        json!({ "result": user_read, "after_ms": user_read_ms }),
    );
    let delta = Counters::delta(&before, &ns.counters(cli)?);
    rec.saw(
        "counters",
        "client counters over the outage (/proc/net/netstat, snmp; delta)",
        delta.pick(&CLIENT_KEYS),
    );
    let discarded = Counters::delta(&server_before, &ns.counters(srv)?).get("Ip.InAddrErrors");
    rec.saw(
        "discarded",
        "server's host: segments it discarded, not addressed to it (Ip.InAddrErrors)",
        discarded,
    );
    let server_state = ns.inside(srv, || diag::state(plain.server_addr, plain.client_addr))?;
    rec.saw(
        "server_state",
        "the server's socket, which never heard any of it",
        server_state,
    );
    let client_state = ns.inside(cli, || diag::state(plain.client_addr, plain.server_addr))?;
    rec.saw(
        "client_state",
        "the client's socket after the error",
        client_state,
    );

    // The server still holds both connections (half-open: 半开连接); the client has closed them
    // without a word. Close the server's side while its address is still gone, so that its
    // RSTs go nowhere, then give the address back.
    for conn in [plain, bounded] {
        abort(conn.server)?;
    }
    ns.ip(srv, &["addr", "add", &server_cidr(), "dev", SERVER_LINK])?;
    pause(shutdown, Duration::from_millis(50))?;
    drop(listener);
    let retransmissions = plain_watch.timeouts;
    Ok(Vanished {
        read: render(&read),
        read_ms,
        probes: delta.get("TcpExt.TCPLossProbes"),
        retransmissions,
        doubled: plain_watch.doubled(),
        aborted: delta.get("TcpExt.TCPAbortOnTimeout"),
        user_read: render(&user_read),
        user_read_ms,
        discarded,
        server_state: server_state.to_string(),
    })
}

/// The server's address with its prefix, as `ip addr` takes it.
fn server_cidr() -> String {
    format!("{SERVER_IP}/30")
}

/// The crash and reboot: returns what the client's read() got.
fn rebooted(rec: &mut Recorder, ns: &Namespaces, shutdown: &Shutdown) -> io::Result<String> {
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    let listener = ns.listen()?;
    let conn = connected(ns, &listener)?;
    rec.say(format!(
        "crash and reboot: {} -> {} connected, request and reply swapped",
        conn.client_addr, conn.server_addr
    ));
    let server_before = ns.counters(srv)?;
    ns.ip(srv, &["addr", "del", &server_cidr(), "dev", SERVER_LINK])?;
    abort(conn.server)?;
    drop(listener);
    rec.saw(
        "crashed_server_state",
        "server host crashes: its socket destroyed, its RST unable to leave",
        ns.inside(srv, || diag::state(conn.server_addr, conn.client_addr))?,
    );
    let server_crashed = ns.counters(srv)?;
    rec.saw(
        "crash_server_counters",
        "server counters over the crash (delta): the abortive close",
        Counters::delta(&server_before, &server_crashed).pick(&SERVER_KEYS),
    );
    let client_before = ns.counters(cli)?;
    ns.ip(srv, &["addr", "add", &server_cidr(), "dev", SERVER_LINK])?;
    pause(shutdown, Duration::from_millis(50))?;
    rec.say("the server host is back up, with no memory of the connection");
    rec.saw(
        "stale_write",
        "client: write(\"again\") on the old connection",
        outcome((&conn.client).write(b"again").map(|n| n as u64)),
    );
    let ready = wait_for(&conn.client, PollFlags::POLLIN, WAIT)?;
    rec.saw("stale_poll", "client: poll(POLLIN)", poll_names(ready));
    let first = rec.saw("stale_read", "client: read()", blocked_read(&conn.client).0);
    rec.saw(
        "stale_read_again",
        "client: read() again",
        blocked_read(&conn.client).0,
    );
    rec.saw(
        "stale_write_after",
        "client: write() after the reset",
        outcome((&conn.client).write(b"x").map(|n| n as u64)),
    );
    rec.saw(
        "reboot_server_counters",
        "server counters after the reboot (delta): the RST it answered with",
        Counters::delta(&server_crashed, &ns.counters(srv)?).pick(&SERVER_KEYS),
    );
    rec.saw(
        "reboot_client_counters",
        "client counters (delta)",
        Counters::delta(&client_before, &ns.counters(cli)?).pick(&CLIENT_KEYS),
    );
    Ok(render(&first))
}
