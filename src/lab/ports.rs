//! `ports`: the client's side of TIME_WAIT — a client that closes first, fast, runs out of
//! ephemeral ports (临时端口), and what `net.ipv4.tcp_tw_reuse` changes.
//!
//! Inside the client's namespace `ip_local_port_range` is cut to eight ports, so the client
//! runs out after eight connections instead of 28 232. Each connection is opened, closed by the
//! client first (so the client's end goes to TIME_WAIT, for 60 s on Linux), and closed by the
//! server after it. A ninth connect() to the same server finds no local port whose 4-tuple is
//! free: EADDRNOTAVAIL (connect(2)). The lab exhausts four destinations, waits past the reuse
//! delay, and tries each once more under a different `tcp_tw_reuse`:
//! - 0: a port in TIME_WAIT is never taken for a new connection;
//! - 2 (the default): only for loopback — `tcp_twsk_unique` (net/ipv4/tcp_ipv4.c) turns 2 into 0
//!   unless the TIME_WAIT socket's address is 127.0.0.0/8 (or ::1) or it was bound to `lo`; so
//!   the veth destination fails and a 127.0.0.1 listener inside the client's namespace works;
//! - 1: any destination, once the TIME_WAIT socket is older than `tcp_tw_reuse_delay`
//!   (1000 ms; a sysctl in recent kernels, a fixed second before) and if it saw TCP timestamps.
//!
//! A reuse is counted in `TcpExt.TWRecycled` (`__inet_check_established`,
//! net/ipv4/inet_hashtables.c), and the TIME_WAIT sockets are counted through sock_diag.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::socket::AddressFamily;
use serde_json::{Value, json};

use super::counters::Counters;
use super::netns::{self, Namespaces, pause};
use super::{
    Lab, Recorder, Verdict, accept_within, connect, diag, errno_name, settled_state, wait_for,
};
use crate::server::net::{self as server_net, ListenOptions};
use crate::server::shutdown::Shutdown;

/// The lab.
pub const LAB: Lab = Lab {
    name: "ports",
    summary: "a client that closes first runs out of ephemeral ports to TIME_WAIT; tcp_tw_reuse 0, 1, 2",
    claim: "a client that opens and closes connections fast, closing first, leaves each local \
            port in TIME_WAIT and runs out of ephemeral ports (connect() fails with \
            EADDRNOTAVAIL); tcp_tw_reuse lets connect() take a port in TIME_WAIT",
    run,
};

/// The client's ephemeral ports: eight of them.
const PORT_RANGE: &str = "40000 40007";
const PORTS: usize = 8;
/// The loopback listener's port, outside the range (a bind to port 0 would take one of them).
const LOOPBACK_PORT: u16 = 50_000;
const WAIT: Duration = Duration::from_secs(1);

/// One destination the client exhausts, and the tcp_tw_reuse its last connect() runs under.
struct Destination {
    key: &'static str,
    reuse: &'static str,
    loopback: bool,
}

const DESTINATIONS: [Destination; 4] = [
    Destination {
        key: "reuse0",
        reuse: "0",
        loopback: false,
    },
    Destination {
        key: "reuse2_veth",
        reuse: "2",
        loopback: false,
    },
    Destination {
        key: "reuse2_loopback",
        reuse: "2",
        loopback: true,
    },
    Destination {
        key: "reuse1",
        reuse: "1",
        loopback: false,
    },
];

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    netns::needed()?;
    let shutdown = Shutdown::install()?;
    let ns = Namespaces::create(rec)?;
    let cli = ns.client.as_str();
    let default_reuse = ns.sysctl(cli, "net/ipv4/tcp_tw_reuse")?;
    let delay_ms: u64 = ns
        .sysctl(cli, "net/ipv4/tcp_tw_reuse_delay")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1000);
    rec.saw(
        "settings",
        "client namespace: ip_local_port_range (set), tcp_tw_reuse, tcp_tw_reuse_delay, tcp_timestamps",
        json!({
            "ip_local_port_range": ns.set_sysctl(cli, "net/ipv4/ip_local_port_range", PORT_RANGE)?,
            "tcp_tw_reuse": default_reuse,
            "tcp_tw_reuse_delay_ms": delay_ms,
            "tcp_timestamps": ns.sysctl(cli, "net/ipv4/tcp_timestamps")?,
        }),
    );
    let mut listeners = Vec::new();
    let mut exhausted = Vec::new();
    for (i, dest) in DESTINATIONS.iter().enumerate() {
        let listener = if dest.loopback {
            let at = SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::LOCALHOST,
                LOOPBACK_PORT + i as u16,
            ));
            ns.inside(cli, || server_net::listen(at, &ListenOptions::default()))?
        } else {
            ns.listen()?
        };
        ns.set_sysctl(cli, "net/ipv4/tcp_tw_reuse", dest.reuse)?;
        rec.say(format!("tcp_tw_reuse = {}", dest.reuse));
        exhausted.push(exhaust(rec, &ns, dest, &listener)?);
        listeners.push(listener);
    }

    rec.say(format!(
        "wait {} ms: past tcp_tw_reuse_delay for every TIME_WAIT socket",
        delay_ms + 200
    ));
    pause(&shutdown, Duration::from_millis(delay_ms + 200))?;
    let mut outcomes = Vec::new();
    for ((dest, listener), ports) in DESTINATIONS.iter().zip(&listeners).zip(&exhausted) {
        outcomes.push(retry(rec, &ns, dest, listener, ports)?);
    }
    ns.set_sysctl(cli, "net/ipv4/tcp_tw_reuse", &default_reuse)?;

    let [reuse0, reuse2_veth, reuse2_lo, reuse1] = [0, 1, 2, 3].map(|i| &outcomes[i]);
    let ran_out = exhausted
        .iter()
        .all(|e| e.made == PORTS && e.then == "EADDRNOTAVAIL" && e.time_wait == PORTS);
    // The claim as stated: the ports run out, and tcp_tw_reuse (1) takes one back.
    let held = ran_out && reuse0.result == "EADDRNOTAVAIL" && reuse1.reused;
    let first = &exhausted[0];
    let summary = format!(
        "with {PORTS} ephemeral ports ({PORT_RANGE}) the client made {} connections to four \
         servers, closing first each time, left {} ports in TIME_WAIT to each (sock_diag; {} ms \
         to go) and the next connect() got {} under every tcp_tw_reuse \
         (0, 2, 2, 1): the sockets were younger than the reuse delay; {} ms later, \
         tcp_tw_reuse=0 gave {}, tcp_tw_reuse=2 gave {} to the \
         veth address and {} to 127.0.0.1 (loopback only), tcp_tw_reuse=1 gave {}; \
         TcpExt.TWRecycled +{} +{} +{} +{}",
        per_server(&exhausted, |e| e.made),
        per_server(&exhausted, |e| e.time_wait),
        first.expires_ms,
        if exhausted.iter().all(|e| e.then == first.then) {
            first.then.clone()
        } else {
            "different errors".to_string()
        },
        delay_ms + 200,
        reuse0.describe(),
        reuse2_veth.describe(),
        reuse2_lo.describe(),
        reuse1.describe(),
        reuse0.recycled,
        reuse2_veth.recycled,
        reuse2_lo.recycled,
        reuse1.recycled,
    );
    Ok(Verdict::new(held, summary))
}

/// One figure per server, `8/8/8/8`.
fn per_server(exhausted: &[Exhausted], figure: impl Fn(&Exhausted) -> usize) -> String {
    let figures: Vec<String> = exhausted.iter().map(|e| figure(e).to_string()).collect();
    figures.join("/")
}

/// What using up the ports towards one destination came to.
struct Exhausted {
    made: usize,
    ports: Vec<u16>,
    then: String,
    time_wait: usize,
    expires_ms: u32,
}

/// Connects to `listener` until connect() fails, the client closing first each time.
fn exhaust(
    rec: &mut Recorder,
    ns: &Namespaces,
    dest: &Destination,
    listener: &TcpListener,
) -> io::Result<Exhausted> {
    let cli = ns.client.as_str();
    let server = listener.local_addr()?;
    let mut ports = Vec::new();
    let then = loop {
        if ports.len() > PORTS {
            break "no failure".to_string();
        }
        match ns.inside(cli, || connect(server)) {
            Ok(client) => {
                let local = client.local_addr()?;
                ports.push(local.port());
                let accepted = accept_within(listener, WAIT)?;
                // The client closes first; the server reads the EOF and closes after it.
                drop(client);
                wait_for(&accepted, PollFlags::POLLIN, WAIT)?;
                let _ = (&accepted).read(&mut [0u8; 16]);
                drop(accepted);
                ns.inside(cli, || {
                    settled_state(local, server, &["FIN_WAIT1", "FIN_WAIT2"])
                })?;
            }
            Err(e) => break errno_name(&e),
        }
    };
    let waiting: Vec<diag::TcpSocket> = ns
        .inside(cli, || diag::tcp_sockets(AddressFamily::Inet))?
        .into_iter()
        .filter(|s| s.remote == server && s.state == "TIME_WAIT")
        .collect();
    let expires_ms = waiting.iter().map(|s| s.expires_ms).max().unwrap_or(0);
    rec.saw(
        &format!("{}_exhaust", dest.key),
        format!("client -> {server}: connect, close first, repeat; the local ports, then"),
        json!({ "connections": ports.len(), "ports": ports, "then": then }),
    );
    rec.saw(
        &format!("{}_time_wait", dest.key),
        "the client's sockets to it in TIME_WAIT (sock_diag), and ms left on the longest",
        json!({ "count": waiting.len(), "expires_ms": expires_ms }),
    );
    Ok(Exhausted {
        made: ports.len(),
        ports,
        then,
        time_wait: waiting.len(),
        expires_ms,
    })
}

/// The last connect() to one destination, past the reuse delay.
struct Retried {
    result: String,
    reused: bool,
    recycled: u64,
}

impl Retried {
    fn describe(&self) -> String {
        if self.reused {
            "ok (a TIME_WAIT port taken)".to_string()
        } else {
            self.result.clone()
        }
    }
}

fn retry(
    rec: &mut Recorder,
    ns: &Namespaces,
    dest: &Destination,
    listener: &TcpListener,
    exhausted: &Exhausted,
) -> io::Result<Retried> {
    let cli = ns.client.as_str();
    let server = listener.local_addr()?;
    ns.set_sysctl(cli, "net/ipv4/tcp_tw_reuse", dest.reuse)?;
    let before = ns.counters(cli)?;
    let (result, port) = match ns.inside(cli, || connect(server)) {
        Ok(client) => {
            let port = client.local_addr()?.port();
            let accepted = accept_within(listener, WAIT)?;
            super::abort(client)?;
            drop(accepted);
            ("ok".to_string(), Some(port))
        }
        Err(e) => (errno_name(&e), None),
    };
    let recycled = Counters::delta(&before, &ns.counters(cli)?).get("TcpExt.TWRecycled");
    let reused = port.is_some_and(|p| exhausted.ports.contains(&p));
    rec.saw(
        &format!("{}_retry", dest.key),
        format!(
            "tcp_tw_reuse = {}: connect() to {server} again; the port; was it in TIME_WAIT",
            dest.reuse
        ),
        json!({ "result": result, "port": port, "was_time_wait": reused }),
    );
    rec.saw(
        &format!("{}_recycled", dest.key),
        "TIME_WAIT sockets taken over (TcpExt.TWRecycled, delta)",
        Value::from(recycled),
    );
    Ok(Retried {
        result,
        reused,
        recycled,
    })
}
