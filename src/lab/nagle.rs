//! `nagle`: write, write, read against a peer that delays its ACKs — the 40 ms stall.
//!
//! Nagle's algorithm (纳格算法, RFC 896) holds a small segment while an earlier one is
//! unacknowledged; the peer's delayed ACK (延迟确认, RFC 1122 4.2.3.2) holds the ACK of a
//! segment it has nothing to answer yet. A client that sends one request in two writes and
//! then waits for the reply meets both: the first half goes out, the second waits for the
//! ACK of the first, and the server, which replies only to a whole request, sends that ACK
//! when its delayed-ACK timer fires. Linux holds a small segment only while an earlier *small*
//! one is unacknowledged (`tcp_nagle_check` and `tcp_minshall_check`, Minshall's variant), which
//! is exactly this case.
//!
//! On Linux the timer is at least `TCP_DELACK_MIN`, HZ/25 jiffies = 40 ms (include/net/tcp.h;
//! a constant, no sysctl), and a receiver starts in quick-ACK mode: it acknowledges at once
//! until it looks interactive — until it has replied within the ACK timeout of receiving
//! (`tcp_event_data_sent` counts that as "pingpong"). So the first exchange of a connection
//! does not stall and the ones after it do. getsockopt(TCP_QUICKACK) reads "not pingpong",
//! which the lab samples on the peer before every round.
//!
//! The stall is observed three ways: its duration, the namespace's `TcpExt DelayedACKs`
//! counter (incremented when the delayed-ACK timer sends an ACK, `tcp_delack_timer_handler`),
//! and the client's data segments out (TCP_INFO `tcpi_data_segs_out`). Then the same exchange
//! with the three cures: TCP_NODELAY (the second write leaves at once), one `writev` (one
//! segment), and TCP_CORK around the two writes (held until uncorked, then one segment).
//!
//! Every model here sets TCP_NODELAY on each accepted connection (`on_accepted` in
//! src/server/net.rs): each reply is one write that should leave at once, and with pipelined
//! requests a second small reply would otherwise wait for the client's delayed ACK of the
//! first.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::libc;
use serde_json::json;

use super::counters::Counters;
use super::netns::Scope;
use super::{
    Lab, Recorder, Verdict, accept_within, connect, int_option, loopback_any, set_int_option,
    tcp_info,
};
use crate::server::net::{self, ListenOptions};

/// The lab.
pub const LAB: Lab = Lab {
    name: "nagle",
    summary: "write, write, read: Nagle's algorithm waits for a delayed ACK; TCP_NODELAY, writev, TCP_CORK",
    claim: "a request sent in two small writes stalls about 40 ms when the peer delays its ACKs: \
            Nagle's algorithm holds the second segment until the first is acknowledged; \
            TCP_NODELAY, one writev, or TCP_CORK around the writes removes the stall",
    run,
};

/// Exchanges per way; the first of a connection is answered in quick-ACK mode.
const ROUNDS: usize = 6;
/// Half a request.
const HALF: &[u8] = b"half";
const REQUEST: usize = 2 * HALF.len();
const REPLY: &[u8] = b"ok";
const WAIT: Duration = Duration::from_secs(2);
/// The delayed-ACK timer cannot fire sooner than TCP_DELACK_MIN (40 ms) less one tick.
const STALL_FLOOR_MS: f64 = 30.0;

/// How the client sends its two halves.
#[derive(Clone, Copy)]
enum Way {
    /// write, write: Nagle's algorithm on (the default).
    Nagle,
    /// write, write with TCP_NODELAY.
    NoDelay,
    /// One writev of both halves.
    Writev,
    /// TCP_CORK on, write, write, TCP_CORK off.
    Cork,
}

impl Way {
    fn key(self) -> &'static str {
        match self {
            Way::Nagle => "nagle",
            Way::NoDelay => "nodelay",
            Way::Writev => "writev",
            Way::Cork => "cork",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Way::Nagle => "write(4), write(4), read — the default (Nagle on)",
            Way::NoDelay => "TCP_NODELAY; write(4), write(4), read",
            Way::Writev => "writev(4 + 4), read",
            Way::Cork => "TCP_CORK on, write(4), write(4), TCP_CORK off, read",
        }
    }
}

/// One exchange as the client and the peer saw it.
struct Round {
    ms: f64,
    delayed_acks: u64,
    segments: u32,
    peer_quickack: i64,
}

fn run(rec: &mut Recorder) -> io::Result<Verdict> {
    let scope = Scope::enter(rec)?;
    rec.saw(
        "delack_sysctl",
        "a sysctl for the delayed-ACK timeout (/proc/sys/net/ipv4/tcp_delack_min)",
        if std::path::Path::new("/proc/sys/net/ipv4/tcp_delack_min").exists() {
            "present"
        } else {
            "none: TCP_DELACK_MIN is a constant"
        },
    );
    let listener = net::listen(loopback_any(), &ListenOptions::default())?;
    rec.say(format!(
        "a peer on {} reads a whole {REQUEST}-byte request, then replies \"{}\"; {ROUNDS} \
         exchanges per way, each on a fresh connection",
        listener.local_addr()?,
        String::from_utf8_lossy(REPLY)
    ));

    let mut results = Vec::new();
    for way in [Way::Nagle, Way::NoDelay, Way::Writev, Way::Cork] {
        let (rounds, peer_ato_us) = exchange(&listener, way)?;
        let value = json!({
            "ms": rounds.iter().map(|r| r.ms).collect::<Vec<_>>(),
            "delayed_acks": rounds.iter().map(|r| r.delayed_acks).collect::<Vec<_>>(),
            "segments": rounds.iter().map(|r| r.segments).collect::<Vec<_>>(),
            "peer_quickack": rounds.iter().map(|r| r.peer_quickack).collect::<Vec<_>>(),
            "peer_ato_us": peer_ato_us,
        });
        rec.saw(way.key(), way.what(), value);
        results.push((way, rounds));
        // A delayed ACK still pending on the connection just closed fires within 40 ms; let it,
        // before the next way's rounds are counted.
        std::thread::sleep(Duration::from_millis(100));
    }

    let rounds_of = |wanted: &str| -> &[Round] {
        results
            .iter()
            .find(|(w, _)| w.key() == wanted)
            .map_or(&[], |(_, r)| r.as_slice())
    };
    let nagle = rounds_of("nagle");
    let later = nagle.get(1..).unwrap_or(&[]);
    let stall_ms = median(later.iter().map(|r| r.ms).collect());
    let stalled_acks: u64 = later.iter().map(|r| r.delayed_acks).sum();
    let first_quick = nagle
        .first()
        .is_some_and(|r| r.peer_quickack == 1 && (!scope.exact() || r.delayed_acks == 0));
    let later_pingpong = later.iter().all(|r| r.peer_quickack == 0);
    let nagle_held = scope.agrees(stalled_acks, later.len() as u64)
        && stall_ms >= STALL_FLOOR_MS
        && nagle.iter().all(|r| r.segments == 2)
        && first_quick
        && later_pingpong;
    // In the shared namespace other connections' delayed ACKs may count too: the cures' zero
    // is checked only where the counts are this lab's alone.
    let cured = |way: &str, segments: u32| {
        let rounds = rounds_of(way);
        !rounds.is_empty()
            && rounds.iter().all(|r| r.segments == segments)
            && (!scope.exact() || rounds.iter().all(|r| r.delayed_acks == 0))
    };
    let cures_held = cured("nodelay", 2) && cured("writev", 1) && cured("cork", 1);
    let median_of = |way: &str| median(rounds_of(way).iter().map(|r| r.ms).collect());
    let summary = format!(
        "write-write-read stalled {stall_ms:.1} ms (median of exchanges 2–{ROUNDS}) with \
         DelayedACKs +{stalled_acks} ({}: one per exchange), two segments each; the first \
         exchange was quick (the peer still in quick-ACK mode){}; TCP_NODELAY {:.1} ms, writev \
         {:.1} ms in one segment, TCP_CORK {:.1} ms in one segment{}",
        scope.word(),
        if later_pingpong {
            ", the later ones met it in pingpong mode"
        } else {
            ""
        },
        median_of("nodelay"),
        median_of("writev"),
        median_of("cork"),
        if scope.exact() {
            ", none with a delayed ACK"
        } else {
            ""
        },
    );
    Ok(Verdict::new(nagle_held && cures_held, summary))
}

/// One way's exchanges on a fresh connection; returns them and the peer's ACK timeout after
/// the last (TCP_INFO `tcpi_ato`, µs).
fn exchange(listener: &TcpListener, way: Way) -> io::Result<(Vec<Round>, u32)> {
    let client = connect(listener.local_addr()?)?;
    let server = accept_within(listener, WAIT)?;
    client.set_read_timeout(Some(WAIT))?;
    server.set_read_timeout(Some(WAIT))?;
    if let Way::NoDelay = way {
        client.set_nodelay(true)?;
    }
    let (to_client, from_peer) = mpsc::channel();
    let (go, ready) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let peer = s.spawn(move || peer(server, &ready, &to_client));
        let mut rounds = Vec::with_capacity(ROUNDS);
        let mut result = Ok(());
        for _ in 0..ROUNDS {
            if go.send(()).is_err() {
                break;
            }
            // The peer samples TCP_QUICKACK before it reads this round's request.
            let peer_quickack = match from_peer.recv_timeout(WAIT) {
                Ok(PeerSays::Quickack(q)) => q,
                _ => {
                    result = Err(io::Error::other("the peer did not start the round"));
                    break;
                }
            };
            match one_round(&client, way) {
                Ok((ms, delayed_acks, segments)) => rounds.push(Round {
                    ms,
                    delayed_acks,
                    segments,
                    peer_quickack,
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(go);
        let ato = match from_peer.recv_timeout(WAIT) {
            Ok(PeerSays::Ato(ato)) => ato,
            _ => 0,
        };
        // The client's close gives the peer EOF if it is still reading.
        drop(client);
        let peer_result = peer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the peer thread panicked")));
        result.and(peer_result).map(|()| (rounds, ato))
    })
}

/// What the peer thread reports.
enum PeerSays {
    /// getsockopt(TCP_QUICKACK) before reading a request: 1 = not in pingpong mode.
    Quickack(i64),
    /// tcpi_ato after the last reply, µs.
    Ato(u32),
}

/// The peer: for each round the client announces, samples TCP_QUICKACK, reads a whole request
/// and replies; reports its ACK timeout when the client is done.
fn peer(
    server: TcpStream,
    ready: &mpsc::Receiver<()>,
    report: &mpsc::Sender<PeerSays>,
) -> io::Result<()> {
    while ready.recv().is_ok() {
        let quick = int_option(&server, libc::IPPROTO_TCP, libc::TCP_QUICKACK)?;
        let _ = report.send(PeerSays::Quickack(i64::from(quick)));
        let mut request = [0u8; REQUEST];
        (&server).read_exact(&mut request)?;
        (&server).write_all(REPLY)?;
    }
    let _ = report.send(PeerSays::Ato(tcp_info(&server)?.tcpi_ato));
    Ok(())
}

/// One exchange from the client: the request sent `way`, the reply read. Returns its duration
/// (ms, one decimal), the namespace's DelayedACKs growth, and the client's data segments out.
fn one_round(client: &TcpStream, way: Way) -> io::Result<(f64, u64, u32)> {
    let before = Counters::read()?;
    let segs_before = tcp_info(client)?.tcpi_data_segs_out;
    let start = Instant::now();
    match way {
        Way::Nagle | Way::NoDelay => {
            let mut w = client;
            w.write_all(HALF)?;
            w.write_all(HALF)?;
        }
        Way::Writev => {
            let n = nix::sys::uio::writev(client, &[IoSlice::new(HALF), IoSlice::new(HALF)])?;
            if n != REQUEST {
                return Err(io::Error::other(format!("writev wrote {n} of {REQUEST}")));
            }
        }
        Way::Cork => {
            set_int_option(client, libc::IPPROTO_TCP, libc::TCP_CORK, 1)?;
            let mut w = client;
            w.write_all(HALF)?;
            w.write_all(HALF)?;
            set_int_option(client, libc::IPPROTO_TCP, libc::TCP_CORK, 0)?;
        }
    }
    let mut reply = [0u8; REPLY.len()];
    (&*client).read_exact(&mut reply)?;
    let elapsed = start.elapsed();
    let after = Counters::read()?;
    let segments = tcp_info(client)?.tcpi_data_segs_out - segs_before;
    let ms = (elapsed.as_micros() as f64 / 100.0).round() / 10.0;
    Ok((ms, after.since(&before, "TcpExt.DelayedACKs"), segments))
}

/// The median of some durations (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
