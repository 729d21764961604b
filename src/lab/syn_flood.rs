//! `syn-flood`: SYNs from forged addresses that never complete their handshake — the SYN
//! queue (未完成连接队列, also called 半连接队列) under a SYN flood (SYN 洪泛), the SYN-ACK
//! retransmissions that keep its entries alive, and syncookies taking over.
//!
//! The flood is real: a raw socket (IPPROTO_RAW, so the lab writes the IP header itself) in
//! the client's namespace sends SYNs whose source addresses, 10.200.78.x, belong to nobody. The
//! server's namespace routes that network back through the client's host, which does not have
//! those addresses and does not forward, so it drops every SYN-ACK (its `Ip.InAddrErrors`
//! counts them): no final ACK ever comes, and no RST either — exactly what a flood from forged
//! sources looks like to the server. The server's sysctls are set inside its namespace
//! (`tcp_synack_retries` 1, so an entry lives 3 s instead of a minute), and the counters of
//! /proc/net/netstat are read there before and after each step.
//!
//! What bounds the SYN queue on Linux is the listener's backlog, not `tcp_max_syn_backlog`:
//! `tcp_conn_request` (net/ipv4/tcp_input.c) asks `inet_csk_reqsk_queue_is_full`, which
//! compares the listener's count of request sockets with `sk_max_ack_backlog` — the backlog
//! given to listen(2), capped at somaxconn. Full, the SYN is dropped (`TCPReqQFullDrop`) or,
//! with syncookies, answered by a cookie (`TCPReqQFullDoCookies`, `SyncookiesSent`) without
//! queueing anything. `tcp_max_syn_backlog` is consulted only with syncookies off: once fewer
//! than a quarter of its slots are left, SYNs from peers the kernel has not seen alive before
//! are dropped (`ListenDrops` without `TCPReqQFullDrop`). The lab runs the four cases:
//! 1. syncookies off, listen(fd, 8): the queue stops, a legitimate client is locked out until
//!    the entries expire after their SYN-ACK retransmission, then gets in on a SYN retry;
//! 2. syncookies off, listen(fd, 256), tcp_max_syn_backlog 16: the other bound;
//! 3. syncookies 1 (the default), listen(fd, 8): the queue fills as before, the rest of the
//!    flood and the legitimate client get cookies, and the client connects at once;
//! 4. syncookies 2: every SYN gets a cookie, nothing is queued.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::{self, CLIENT_IP, Namespaces, SERVER_IP, check, pause};
use super::{
    Lab, Recorder, Verdict, accept_within, bind, connect_nonblocking, diag, listen_exact,
    local_addr, millis, so_error, wait_for,
};
use crate::server::shutdown::Shutdown;

/// The lab.
pub const LAB: Lab = Lab {
    name: "syn-flood",
    summary: "SYNs from forged addresses that never complete: the SYN queue, SYN-ACK retries, syncookies",
    claim: "a SYN flood fills the queue of incomplete connections, which holds \
            net.ipv4.tcp_max_syn_backlog entries; once it is full every new SYN is dropped, so a \
            legitimate client cannot connect until the entries time out after tcp_synack_retries \
            SYN-ACK retransmissions — unless syncookies are on, when the server answers without \
            queueing and the client connects",
    run,
};

/// Forged SYNs per flood.
const FLOOD: u32 = 64;
/// The flood of the last case, where nothing is queued.
const SMALL_FLOOD: u32 = 16;
/// The backlog of the listeners that the flood fills.
const BACKLOG: i32 = 8;
/// The backlog and tcp_max_syn_backlog of the second case.
const BIG_BACKLOG: i32 = 256;
const SMALL_SYN_BACKLOG: u32 = 16;
/// SYN-ACK retransmissions per entry: an entry then lives 1 s + 2 s.
const SYNACK_RETRIES: &str = "1";
/// The forged sources, a /24 nobody has; the server routes it back via the client's host.
const FORGED_NET: [u8; 3] = [10, 200, 78];
/// How long the lab waits for the locked-out client (entries expire after 3 s).
const LOCKOUT_LIMIT: Duration = Duration::from_secs(8);

/// The server's counters each step reports.
const SERVER_KEYS: [&str; 8] = [
    "TcpExt.SyncookiesSent",
    "TcpExt.SyncookiesRecv",
    "TcpExt.SyncookiesFailed",
    "TcpExt.TCPReqQFullDrop",
    "TcpExt.TCPReqQFullDoCookies",
    "TcpExt.ListenDrops",
    "TcpExt.ListenOverflows",
    "TcpExt.TCPSynRetrans",
];

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    netns::needed()?;
    let shutdown = Shutdown::install()?;
    let ns = Namespaces::create(rec)?;
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    let forged = format!("{}.{}.{}.0/24", FORGED_NET[0], FORGED_NET[1], FORGED_NET[2]);
    ns.ip(
        srv,
        &["route", "add", &forged, "via", &CLIENT_IP.to_string()],
    )?;
    rec.say(format!(
        "server: route {forged} via {CLIENT_IP}: SYN-ACKs to the forged sources go to the \
         client's host, which drops them (not its addresses, no forwarding)"
    ));
    let settings = json!({
        "tcp_synack_retries": ns.set_sysctl(srv, "net/ipv4/tcp_synack_retries", SYNACK_RETRIES)?,
        "tcp_max_syn_backlog": ns.sysctl(srv, "net/ipv4/tcp_max_syn_backlog")?,
        "tcp_syncookies": ns.sysctl(srv, "net/ipv4/tcp_syncookies")?,
        "somaxconn": ns.sysctl(srv, "net/core/somaxconn")?,
        "client_ip_forward": ns.sysctl(cli, "net/ipv4/ip_forward")?,
    });
    rec.saw(
        "settings",
        "server namespace sysctls (synack retries set; the rest as a new namespace has them)",
        settings.clone(),
    );
    let default_syn_backlog = settings["tcp_max_syn_backlog"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut forger = Forger::new(&ns)?;

    let locked = locked_out(rec, &ns, &mut forger, &shutdown)?;
    let max_syn = syn_backlog_bound(rec, &ns, &mut forger, &default_syn_backlog)?;
    let cookies = with_cookies(rec, &ns, &mut forger, 3, "1", FLOOD, "cookies")?;
    let always = with_cookies(rec, &ns, &mut forger, 4, "2", SMALL_FLOOD, "always")?;

    // The claim, as the books put it: the flood fills tcp_max_syn_backlog entries.
    let held = default_syn_backlog.parse::<u64>().ok() == Some(locked.queued)
        && locked.client_ms.is_some()
        && cookies.client_connected;
    let client = match locked.client_ms {
        Some(ms) => format!(
            "a legitimate client, its SYN dropped {} times meanwhile, got in after {ms} ms",
            locked.client_drops
        ),
        None => "a legitimate client did not get in".to_string(),
    };
    let summary = format!(
        "listen(fd, {BACKLOG}) queued {} forged SYNs and dropped {} (TcpExt.TCPReqQFullDrop \
         +{}) while tcp_max_syn_backlog was {default_syn_backlog}: the listen backlog bounds the \
         SYN queue; with tcp_max_syn_backlog {SMALL_SYN_BACKLOG} and listen(fd, {BIG_BACKLOG}) \
         the queue stopped at {} (ListenDrops +{}, TCPReqQFullDrop +{}); SYN-ACK \
         retransmissions per entry: {} (TCPSynRetrans +{}), and the queue was empty {} after \
         the flood; {client}; with syncookies=1 the client {} (SyncookiesSent +{}, \
         SyncookiesRecv +{}), and with syncookies=2 {} of {SMALL_FLOOD} SYNs were queued \
         (SyncookiesSent +{})",
        locked.queued,
        FLOOD as u64 - locked.queued,
        locked.full_drops,
        max_syn.queued,
        max_syn.listen_drops,
        max_syn.full_drops,
        locked.retrans_seen,
        locked.synack_retrans,
        locked
            .emptied_ms
            .map_or("not".to_string(), |ms| format!("{ms} ms")),
        if cookies.client_connected {
            format!("connected in {} ms", cookies.client_ms)
        } else {
            "did not connect".to_string()
        },
        cookies.cookies_sent,
        cookies.cookies_recv,
        always.queued,
        always.cookies_sent,
    );
    Ok(Verdict::new(held, summary))
}

/// Sends forged SYNs from a raw socket in the client's namespace.
struct Forger {
    fd: OwnedFd,
    sent: u32,
}

impl Forger {
    fn new(ns: &Namespaces) -> io::Result<Forger> {
        // IPPROTO_RAW: the packet given to sendto() starts with our own IP header (raw(7)),
        // source address included; the kernel fills in the header checksum.
        let fd = ns.inside(&ns.client, || {
            Ok(socket::socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Raw,
            )?)
        })?;
        Ok(Forger { fd, sent: 0 })
    }

    /// Sends `count` SYNs to `to`, each from a different forged address and port.
    fn flood(&mut self, to: SocketAddrV4, count: u32) -> io::Result<()> {
        for _ in 0..count {
            let i = self.sent;
            self.sent += 1;
            let source = Ipv4Addr::new(
                FORGED_NET[0],
                FORGED_NET[1],
                FORGED_NET[2],
                1 + (i % 250) as u8,
            );
            let port = 20_000 + (i % 40_000) as u16;
            let packet = syn_packet(
                SocketAddrV4::new(source, port),
                to,
                i.wrapping_mul(2_654_435_761),
            );
            socket::sendto(
                self.fd.as_raw_fd(),
                &packet,
                &SockaddrIn::from(to),
                MsgFlags::empty(),
            )?;
        }
        Ok(())
    }
}

/// An IPv4 header and a TCP SYN with an MSS option, as a client's first segment looks.
fn syn_packet(from: SocketAddrV4, to: SocketAddrV4, seq: u32) -> Vec<u8> {
    const TCP_LEN: usize = 24;
    let mut p = Vec::with_capacity(20 + TCP_LEN);
    p.extend_from_slice(&[0x45, 0]); // version 4, header 5 words; TOS 0
    p.extend_from_slice(&((20 + TCP_LEN) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0]); // id (the kernel picks one), don't fragment
    p.extend_from_slice(&[64, 6, 0, 0]); // TTL, TCP, header checksum (the kernel fills it)
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    let mut tcp = Vec::with_capacity(TCP_LEN);
    tcp.extend_from_slice(&from.port().to_be_bytes());
    tcp.extend_from_slice(&to.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes()); // no ACK
    tcp.extend_from_slice(&[(TCP_LEN as u8 / 4) << 4, 0x02]); // data offset; SYN
    tcp.extend_from_slice(&64_240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum (below), urgent pointer
    tcp.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&from.ip().octets());
    pseudo.extend_from_slice(&to.ip().octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(TCP_LEN as u16).to_be_bytes());
    let sum = internet_checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&tcp);
    p
}

/// The ones' complement sum of RFC 1071 over the concatenated chunks (each of even length but
/// the last).
fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            sum += u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A listener in the server's namespace, flooded.
struct Flooded {
    listener: TcpListener,
    addr: SocketAddr,
    /// Forged SYNs the listener holds as request sockets (SYN_RECV).
    queued: u64,
    /// The server's counters over the flood.
    delta: Counters,
    /// When the first forged SYN was sent.
    sent_at: Instant,
}

/// Makes a listener with `backlog`, floods it with `count` SYNs, and records what the kernel
/// kept and counted.
fn flood(
    rec: &mut Recorder,
    ns: &Namespaces,
    forger: &mut Forger,
    prefix: &str,
    backlog: i32,
    count: u32,
) -> io::Result<Flooded> {
    let srv = ns.server.as_str();
    let any = SocketAddr::V4(SocketAddrV4::new(SERVER_IP, 0));
    let listener = ns.inside(srv, || listen_exact(bind(any, true)?, backlog))?;
    let addr = listener.local_addr()?;
    let SocketAddr::V4(to) = addr else {
        return Err(io::Error::other("the server listens on IPv4"));
    };
    let before = ns.counters(srv)?;
    let sent_at = Instant::now();
    forger.flood(to, count)?;
    // Wait until the server has taken in every forged SYN (Tcp.InSegs), then read the queue.
    let deadline = Instant::now() + Duration::from_secs(2);
    while ns.counters(srv)?.get("Tcp.InSegs") < before.get("Tcp.InSegs") + u64::from(count)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    let queued = forged_requests(ns, addr)?.len() as u64;
    let listed = ns.inside(srv, || diag::listener(addr))?;
    let delta = Counters::delta(&before, &ns.counters(srv)?);
    rec.say(format!(
        "listen(fd, {backlog}) on {addr}; {count} SYNs from forged addresses"
    ));
    rec.saw(
        &format!("{prefix}_listener"),
        "listener: Send-Q (the backlog in force) and Recv-Q (accept queue)",
        listed.map(|l| json!({ "send_q": l.send_q, "recv_q": l.recv_q })),
    );
    rec.saw(
        &format!("{prefix}_queued"),
        "request sockets in SYN_RECV for the forged sources (sock_diag)",
        queued,
    );
    rec.saw(
        &format!("{prefix}_flood_counters"),
        "server counters over the flood (/proc/net/netstat, delta)",
        delta.pick(&SERVER_KEYS),
    );
    Ok(Flooded {
        listener,
        addr,
        queued,
        delta,
        sent_at,
    })
}

fn is_forged(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().octets()[..3] == FORGED_NET,
        SocketAddr::V6(_) => false,
    }
}

/// The request sockets of the listener on `addr` whose peer is a forged address.
fn forged_requests(ns: &Namespaces, addr: SocketAddr) -> io::Result<Vec<diag::TcpSocket>> {
    Ok(ns
        .inside(&ns.server, || diag::tcp_sockets(AddressFamily::Inet))?
        .into_iter()
        .filter(|s| s.local == addr && s.state == "SYN_RECV" && is_forged(s.remote))
        .collect())
}

/// What the first case found.
struct LockedOut {
    queued: u64,
    full_drops: u64,
    retrans_seen: u8,
    synack_retrans: u64,
    emptied_ms: Option<u64>,
    client_ms: Option<u64>,
    client_drops: u64,
}

/// Case 1: no syncookies; the flood fills the queue and a legitimate client waits.
fn locked_out(
    rec: &mut Recorder,
    ns: &Namespaces,
    forger: &mut Forger,
    shutdown: &Shutdown,
) -> io::Result<LockedOut> {
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    rec.say("case 1: net.ipv4.tcp_syncookies = 0");
    ns.set_sysctl(srv, "net/ipv4/tcp_syncookies", "0")?;
    let client_before = ns.counters(cli)?;
    let flooded = flood(rec, ns, forger, "nocookie", BACKLOG, FLOOD)?;
    let start = flooded.sent_at;
    let after_flood = ns.counters(srv)?;

    let (client, said) = ns.inside(cli, || connect_nonblocking(flooded.addr))?;
    let client_addr = local_addr(&client)?;
    let connect_at = Instant::now();
    wait_for(&client, PollFlags::POLLOUT, Duration::from_millis(300))?;
    rec.saw(
        "nocookie_client",
        format!("legitimate client {client_addr}: connect() -> {said}; its state 300 ms later"),
        ns.inside(cli, || diag::state(client_addr, flooded.addr))?,
    );

    // Watch the queue until the client gets in: the entries' SYN-ACK retransmissions, their
    // expiry, and the client's SYN retries.
    let mut timeline = Vec::new();
    let mut last = (u64::MAX, u8::MAX);
    let mut retrans_seen = 0u8;
    let mut emptied_ms = None;
    let mut client_ms = None;
    while connect_at.elapsed() < LOCKOUT_LIMIT {
        check(shutdown)?;
        let entries = forged_requests(ns, flooded.addr)?;
        let most = entries.iter().map(|s| s.retrans).max().unwrap_or(0);
        retrans_seen = retrans_seen.max(most);
        let now = (entries.len() as u64, most);
        if now != last {
            timeline.push(json!({
                "after_ms": millis(start.elapsed()),
                "syn_recv": now.0,
                "synack_retransmissions": now.1,
            }));
            last = now;
        }
        if entries.is_empty() && emptied_ms.is_none() {
            emptied_ms = Some(millis(start.elapsed()));
        }
        if !wait_for(&client, PollFlags::POLLOUT, Duration::ZERO)?.is_empty()
            && so_error(&client)? == "0"
            && ns.inside(cli, || diag::state(client_addr, flooded.addr))? == "ESTABLISHED"
        {
            client_ms = Some(millis(connect_at.elapsed()));
            break;
        }
        pause(shutdown, Duration::from_millis(25))?;
    }
    rec.saw(
        "nocookie_timeline",
        "forged SYN_RECV entries and their SYN-ACK retransmissions, ms after the flood",
        Value::from(timeline),
    );
    rec.saw(
        "nocookie_client_connected",
        "legitimate client: ms from connect() to ESTABLISHED",
        client_ms,
    );
    let accepted = if client_ms.is_some() {
        super::outcome(accept_within(&flooded.listener, Duration::from_secs(1)).map(|_| "ok"))
    } else {
        Value::from("not tried")
    };
    rec.saw("nocookie_accept", "server: accept()", accepted);
    let since = Counters::delta(&after_flood, &ns.counters(srv)?);
    rec.saw(
        "nocookie_wait_counters",
        "server counters while the client waited (delta)",
        since.pick(&SERVER_KEYS),
    );
    let client_dropped = Counters::delta(&client_before, &ns.counters(cli)?);
    rec.saw(
        "nocookie_synacks_dropped",
        "client host: SYN-ACKs to the forged addresses it dropped (Ip.InAddrErrors)",
        client_dropped.get("Ip.InAddrErrors"),
    );
    Ok(LockedOut {
        queued: flooded.queued,
        full_drops: flooded.delta.get("TcpExt.TCPReqQFullDrop"),
        retrans_seen,
        synack_retrans: since.get("TcpExt.TCPSynRetrans"),
        emptied_ms,
        client_ms,
        client_drops: since.get("TcpExt.TCPReqQFullDrop"),
    })
}

/// What the second case found.
struct SynBacklogBound {
    queued: u64,
    listen_drops: u64,
    full_drops: u64,
}

/// Case 2: no syncookies, a big backlog and a small tcp_max_syn_backlog.
fn syn_backlog_bound(
    rec: &mut Recorder,
    ns: &Namespaces,
    forger: &mut Forger,
    default: &str,
) -> io::Result<SynBacklogBound> {
    let srv = ns.server.as_str();
    rec.say(format!(
        "case 2: tcp_syncookies = 0, tcp_max_syn_backlog = {SMALL_SYN_BACKLOG}, a backlog of \
         {BIG_BACKLOG}"
    ));
    ns.set_sysctl(
        srv,
        "net/ipv4/tcp_max_syn_backlog",
        &SMALL_SYN_BACKLOG.to_string(),
    )?;
    let flooded = flood(rec, ns, forger, "maxsyn", BIG_BACKLOG, FLOOD)?;
    ns.set_sysctl(srv, "net/ipv4/tcp_max_syn_backlog", default)?;
    Ok(SynBacklogBound {
        queued: flooded.queued,
        listen_drops: flooded.delta.get("TcpExt.ListenDrops"),
        full_drops: flooded.delta.get("TcpExt.TCPReqQFullDrop"),
    })
}

/// What a case with syncookies found.
struct WithCookies {
    queued: u64,
    client_connected: bool,
    client_ms: u64,
    cookies_sent: u64,
    cookies_recv: u64,
}

/// Cases 3 and 4: syncookies `mode`; the flood, then a legitimate client.
fn with_cookies(
    rec: &mut Recorder,
    ns: &Namespaces,
    forger: &mut Forger,
    case: u32,
    mode: &str,
    count: u32,
    prefix: &str,
) -> io::Result<WithCookies> {
    let (srv, cli) = (ns.server.as_str(), ns.client.as_str());
    rec.say(format!("case {case}: net.ipv4.tcp_syncookies = {mode}"));
    ns.set_sysctl(srv, "net/ipv4/tcp_syncookies", mode)?;
    let before = ns.counters(srv)?;
    let flooded = flood(rec, ns, forger, prefix, BACKLOG, count)?;
    let after_flood = ns.counters(srv)?;
    let (client, said) = ns.inside(cli, || connect_nonblocking(flooded.addr))?;
    let client_addr = local_addr(&client)?;
    let start = Instant::now();
    let ready = wait_for(&client, PollFlags::POLLOUT, Duration::from_secs(2))?;
    let client_ms = millis(start.elapsed());
    let error = so_error(&client)?;
    let state = ns.inside(cli, || diag::state(client_addr, flooded.addr))?;
    let client_connected = !ready.is_empty() && error == "0" && state == "ESTABLISHED";
    rec.saw(
        &format!("{prefix}_client"),
        format!("legitimate client: connect() -> {said}; SO_ERROR, state, ms"),
        json!({ "so_error": error, "state": state, "after_ms": client_ms }),
    );
    let accepted = accept_within(&flooded.listener, Duration::from_secs(1));
    let server_side = match &accepted {
        Ok(stream) => {
            let local = stream.local_addr()?;
            ns.inside(srv, || diag::state(local, client_addr))?
        }
        Err(_) => "none",
    };
    rec.saw(
        &format!("{prefix}_accept"),
        "server: accept(), and the accepted socket's state",
        json!({ "accept": super::outcome(accepted.map(|_| "ok")), "state": server_side }),
    );
    let client_delta = Counters::delta(&after_flood, &ns.counters(srv)?);
    rec.saw(
        &format!("{prefix}_client_counters"),
        "server counters for the legitimate client's handshake (delta)",
        client_delta.pick(&SERVER_KEYS),
    );
    let total = Counters::delta(&before, &ns.counters(srv)?);
    Ok(WithCookies {
        queued: flooded.queued,
        client_connected,
        client_ms,
        cookies_sent: total.get("TcpExt.SyncookiesSent"),
        cookies_recv: total.get("TcpExt.SyncookiesRecv"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet whose checksum field is filled in sums to zero (RFC 1071's check).
    #[test]
    fn syn_checksum_verifies() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 200, 78, 1), 20_000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 200, 77, 1), 80);
        let p = syn_packet(from, to, 12345);
        assert_eq!(p.len(), 44);
        assert_eq!(p[33], 0x02, "SYN only");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&from.ip().octets());
        pseudo.extend_from_slice(&to.ip().octets());
        pseudo.extend_from_slice(&[0, 6, 0, 24]);
        assert_eq!(internet_checksum(&[&pseudo, &p[20..]]), 0);
    }
}
