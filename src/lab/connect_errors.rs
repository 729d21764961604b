//! `connect-errors`: the ways a blocking connect(2) fails, each staged for real between two
//! network namespaces, each with the errno, the time it took, the SYN retransmissions seen in
//! sock_diag and the counters that moved.
//!
//! The server's namespace doubles as a router (ip_forward on) for 10.200.79.0/24, which the
//! client reaches through it:
//! 1. **RST**: a port on the server nobody listens on. The server's kernel answers the SYN with
//!    an RST (复位) and connect() fails with ECONNREFUSED (`tcp_reset`, net/ipv4/tcp_input.c).
//! 2. **silence**: 10.200.79.2 is routed to a blackhole on the router, which drops the SYN and
//!    says nothing. The client retransmits the SYN until `tcp_write_timeout`
//!    (net/ipv4/tcp_timer.c) gives up and connect() fails with ETIMEDOUT. `tcp_syn_retries` is
//!    set to 1 inside the client's namespace, so this takes seconds, not two minutes. Since
//!    commit ccce324dabfe (2023) the first `tcp_syn_linear_timeouts` (4) SYN timeouts stay at
//!    1 s instead of doubling, and they are added to `tcp_syn_retries` as a count — while the time
//!    limit stays what `tcp_syn_retries` doubling timeouts would take, `(2^(N+1) − 1) × 1 s`.
//!    The lab runs the silent case twice, with `tcp_syn_linear_timeouts` 4 and 0.
//! 3. **ICMP host unreachable**: 10.200.79.3 has a route of type `unreachable` on the router,
//!    which answers the SYN with ICMP destination unreachable, code host unreachable. The
//!    books call that a soft error, kept while the SYN is retried; Linux's `tcp_v4_err`
//!    (net/ipv4/tcp_ipv4.c) fails a connection in SYN_SENT at once with the error
//!    (EHOSTUNREACH) — soft errors are for connections already established. One exception
//!    shows here: an ICMP that arrives while the socket is held by a system call (the first
//!    one does, because the router answers within the connect() call that sent the SYN) can
//!    only be noted as a soft error (`sk_err_soft`, counted in `TcpExt.LockDroppedIcmps`);
//!    the answer to the SYN's first retransmission then ends the attempt.
//! 4. **no route**: an address the client has no route to fails in connect() itself with
//!    ENETUNREACH, before any segment is sent (`Ip.OutNoRoutes` counts it).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockaddrIn, sockopt};
use nix::sys::time::TimeVal;
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::{self, Namespaces, SERVER_IP, check};
use super::{Lab, Recorder, Verdict, diag, millis, tcp_socket};
use crate::server::shutdown::Shutdown;

/// The lab.
pub const LAB: Lab = Lab {
    name: "connect-errors",
    summary: "connect() refused (RST), timed out (silence), unreachable (ICMP), and with no route",
    claim: "connect() fails three ways: an RST from a port nobody listens on gives ECONNREFUSED \
            at once; no answer at all gives ETIMEDOUT after the SYN has been retransmitted \
            tcp_syn_retries times with a doubling timeout; an ICMP host unreachable is a soft \
            error: the kernel keeps retransmitting the SYN and returns EHOSTUNREACH only when \
            it gives up",
    run,
};

/// A port nobody listens on in the fresh server namespace.
const CLOSED_PORT: u16 = 9;
/// The network behind the router, and the two hosts on it.
const ROUTED_NET: &str = "10.200.79.0/24";
const SILENT_HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 79, 2);
const UNREACHABLE_HOST: Ipv4Addr = Ipv4Addr::new(10, 200, 79, 3);
/// An address nobody routes (TEST-NET-1, RFC 5737).
const NO_ROUTE_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// tcp_syn_retries inside the client's namespace.
const SYN_RETRIES: u32 = 1;
/// TCP_TIMEOUT_INIT: the first SYN's retransmission timeout.
const SYN_RTO_MS: u64 = 1000;
/// A bound on each blocking connect (SO_SNDTIMEO), far past what the kernel takes.
const CONNECT_BOUND: Duration = Duration::from_secs(15);

/// The client's counters each attempt reports.
const CLIENT_KEYS: [&str; 7] = [
    "TcpExt.LockDroppedIcmps",
    "Tcp.ActiveOpens",
    "Tcp.AttemptFails",
    "TcpExt.TCPSynRetrans",
    "TcpExt.TCPTimeouts",
    "Icmp.InDestUnreachs",
    "Ip.OutNoRoutes",
];
/// The server's (router's).
const SERVER_KEYS: [&str; 2] = ["Tcp.OutRsts", "Icmp.OutDestUnreachs"];

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    netns::needed()?;
    let shutdown = Shutdown::install()?;
    let ns = Namespaces::create(rec)?;
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    ns.set_sysctl(srv, "net/ipv4/ip_forward", "1")?;
    ns.ip(
        srv,
        &["route", "add", "blackhole", &format!("{SILENT_HOST}/32")],
    )?;
    ns.ip(
        srv,
        &[
            "route",
            "add",
            "unreachable",
            &format!("{UNREACHABLE_HOST}/32"),
        ],
    )?;
    ns.ip(
        cli,
        &["route", "add", ROUTED_NET, "via", &SERVER_IP.to_string()],
    )?;
    rec.say(format!(
        "router (the server's namespace, forwarding on): {SILENT_HOST} blackhole, \
         {UNREACHABLE_HOST} unreachable; the client routes {ROUTED_NET} through it"
    ));
    let linear = ns.sysctl(cli, "net/ipv4/tcp_syn_linear_timeouts").ok();
    rec.saw(
        "settings",
        "client namespace: tcp_syn_retries (set), tcp_syn_linear_timeouts",
        json!({
            "tcp_syn_retries": ns.set_sysctl(cli, "net/ipv4/tcp_syn_retries", &SYN_RETRIES.to_string())?,
            "tcp_syn_linear_timeouts": linear,
        }),
    );

    let stage = Stage {
        ns: &ns,
        shutdown: &shutdown,
    };
    let refused = stage.attempt(rec, "refused", SocketAddrV4::new(SERVER_IP, CLOSED_PORT))?;
    let silent = stage.attempt(rec, "silent", SocketAddrV4::new(SILENT_HOST, 80))?;
    let silent_exponential = match &linear {
        Some(default) => {
            ns.set_sysctl(cli, "net/ipv4/tcp_syn_linear_timeouts", "0")?;
            rec.say("again with tcp_syn_linear_timeouts = 0: every SYN timeout doubles");
            let to = SocketAddrV4::new(SILENT_HOST, 81);
            let a = stage.attempt(rec, "silent_exponential", to)?;
            ns.set_sysctl(cli, "net/ipv4/tcp_syn_linear_timeouts", default)?;
            Some(a)
        }
        None => None,
    };
    let unreachable = stage.attempt(rec, "unreachable", SocketAddrV4::new(UNREACHABLE_HOST, 80))?;
    let no_route = stage.attempt(rec, "no_route", SocketAddrV4::new(NO_ROUTE_HOST, 80))?;

    let model_ms = ((2u64 << SYN_RETRIES) - 1) * SYN_RTO_MS;
    // As the books have it: the SYN retransmitted tcp_syn_retries times before ETIMEDOUT, and
    // EHOSTUNREACH only once the retries are spent.
    let held = refused.errno == "ECONNREFUSED"
        && silent.errno == "ETIMEDOUT"
        && silent.client.get("TcpExt.TCPSynRetrans") == u64::from(SYN_RETRIES)
        && unreachable.errno == "EHOSTUNREACH"
        && unreachable.ms >= model_ms;
    let exponential = match &silent_exponential {
        Some(a) => format!(
            "; with tcp_syn_linear_timeouts 0, {} after {} ms, SYN retransmissions {}",
            a.errno,
            a.ms,
            a.client.get("TcpExt.TCPSynRetrans")
        ),
        None => String::new(),
    };
    let summary = format!(
        "RST: {} after {} ms (the server's Tcp.OutRsts +{}); silence with tcp_syn_retries \
         {SYN_RETRIES}: {} after {} ms, SYN retransmissions {} (TcpExt.TCPSynRetrans){exponential} \
         — the limit is a time, {model_ms} ms, not a count; ICMP host unreachable: {} after {} \
         ms, SYN retransmissions {}, ICMPs received {} (Icmp.InDestUnreachs), of which {} came \
         while connect() held the socket and was only noted (TcpExt.LockDroppedIcmps): the \
         first ICMP the kernel could act on ended the attempt; no route: {} after {} ms, \
         nothing sent (Ip.OutNoRoutes +{})",
        refused.errno,
        refused.ms,
        refused.server.get("Tcp.OutRsts"),
        silent.errno,
        silent.ms,
        silent.client.get("TcpExt.TCPSynRetrans"),
        unreachable.errno,
        unreachable.ms,
        unreachable.client.get("TcpExt.TCPSynRetrans"),
        unreachable.client.get("Icmp.InDestUnreachs"),
        unreachable.client.get("TcpExt.LockDroppedIcmps"),
        no_route.errno,
        no_route.ms,
        no_route.client.get("Ip.OutNoRoutes"),
    );
    Ok(Verdict::new(held, summary))
}

/// What one connect() came to.
struct Attempt {
    errno: String,
    ms: u64,
    client: Counters,
    server: Counters,
}

/// The namespaces the attempts are made in, and the signal that cuts them short.
struct Stage<'a> {
    ns: &'a Namespaces,
    shutdown: &'a Shutdown,
}

impl Stage<'_> {
    /// A blocking connect() from the client's namespace to `to`, in a thread, while this
    /// thread watches the socket's SYN retransmissions through sock_diag.
    fn attempt(&self, rec: &mut Recorder, key: &str, to: SocketAddrV4) -> io::Result<Attempt> {
        let (ns, shutdown) = (self.ns, self.shutdown);
        let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
        let fd = ns.inside(cli, || tcp_socket(false))?;
        socket::setsockopt(
            &fd,
            sockopt::SendTimeout,
            &TimeVal::new(CONNECT_BOUND.as_secs() as i64, 0),
        )?;
        let client_before = ns.counters(cli)?;
        let server_before = ns.counters(srv)?;
        let target = SocketAddr::V4(to);
        let mut retransmissions = Vec::new();
        let (result, took) = std::thread::scope(|scope| {
            let connecting = scope.spawn(|| {
                let start = Instant::now();
                let result = socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to));
                (result, start.elapsed())
            });
            let start = Instant::now();
            let mut seen = 0u8;
            let mut watching = Ok(());
            while !connecting.is_finished() {
                if let Err(e) = check(shutdown) {
                    // Unblock the connect: the namespaces go on the way out.
                    let _ = socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Both);
                    watching = Err(e);
                    break;
                }
                let syn_sent = ns.inside(cli, || diag::tcp_sockets(AddressFamily::Inet));
                match syn_sent {
                    Ok(sockets) => {
                        for s in sockets.iter().filter(|s| s.remote == target) {
                            if s.retrans > seen {
                                seen = s.retrans;
                                retransmissions.push(json!({
                                    "after_ms": millis(start.elapsed()),
                                    "retransmissions": s.retrans,
                                    "next_in_ms": s.expires_ms,
                                }));
                            }
                        }
                    }
                    Err(e) => watching = Err(e),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let joined = connecting
                .join()
                .map_err(|_| io::Error::other("the connecting thread panicked"));
            watching.and(joined)
        })?;
        let errno = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:?}"),
        };
        let ms = millis(took);
        let client = Counters::delta(&client_before, &ns.counters(cli)?);
        let server = Counters::delta(&server_before, &ns.counters(srv)?);
        rec.saw(
            key,
            format!("connect({to}): errno, ms it blocked"),
            json!({ "result": errno, "after_ms": ms }),
        );
        rec.saw(
            &format!("{key}_retransmissions"),
            "SYN retransmissions seen in sock_diag while it blocked",
            Value::from(retransmissions),
        );
        rec.saw(
            &format!("{key}_client_counters"),
            "client counters (delta)",
            client.pick(&CLIENT_KEYS),
        );
        rec.saw(
            &format!("{key}_server_counters"),
            "server / router counters (delta)",
            server.pick(&SERVER_KEYS),
        );
        Ok(Attempt {
            errno,
            ms,
            client,
            server,
        })
    }
}
