//! TCP sockets as the kernel sees them, through sock_diag (NETLINK_SOCK_DIAG) — the interface
//! `ss` uses.
//!
//! /proc/net/tcp shows the same states, but for a listener sock_diag also gives the backlog in
//! force (the "Send-Q" that `ss -lt` prints) beside the accept queue's length ("Recv-Q"), and
//! for every socket the timer that is armed (retransmit, keepalive, TIME_WAIT) and how many
//! probes it has sent. The request is one dump of every TCP socket of a family in the caller's
//! network namespace; the labs filter by address.
//!
//! Asked for it, the dump also carries each socket's `struct tcp_info` (the INET_DIAG_INFO
//! attribute, what `ss -ti` prints): the retransmission count, the backoff and the current
//! retransmission timeout (RTO) of a connection whose segments go unanswered.
//!
//! The structures are built and parsed by hand from `linux/inet_diag.h`, `linux/tcp.h` and
//! `linux/netlink.h`, so no `unsafe` is needed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
};
use nix::sys::time::TimeVal;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, and a 48-byte socket id.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, the socket id, then five u32.
const MSG_LEN: usize = 72;
/// The attribute carrying `struct tcp_info`, and the request bit that asks for it.
const INET_DIAG_INFO: u16 = 2;
const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);
/// The part of `struct tcp_info` read here: up to and including `tcpi_total_retrans`.
const TCP_INFO_LEN: usize = 104;

/// One TCP socket, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (0.0.0.0:0 for a listener).
    pub remote: SocketAddr,
    /// The TCP state, by its RFC 793 name (`ESTABLISHED`, `TIME_WAIT`).
    pub state: &'static str,
    /// For a listener, connections waiting in the accept queue; otherwise bytes received and
    /// not yet read by the application.
    pub recv_q: u32,
    /// For a listener, the backlog in force; otherwise bytes sent and not yet acknowledged.
    pub send_q: u32,
    /// The timer armed on the socket: `none`, `retransmit`, `keepalive`, `time-wait`, `probe`.
    pub timer: &'static str,
    /// Retransmissions, or keepalive and zero-window probes sent, for the armed timer.
    pub retrans: u8,
    /// Milliseconds until the armed timer fires.
    pub expires_ms: u32,
    /// The socket's inode (0 once no descriptor refers to it).
    pub inode: u32,
}

/// Part of a connection's `struct tcp_info` (`linux/tcp.h`), as `getsockopt(TCP_INFO)` or
/// `ss -ti` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// Retransmission timeouts in a row without an ACK (`icsk_retransmits`): reset by an ACK.
    pub retransmits: u8,
    /// How many times the retransmission timer has been doubled (`icsk_backoff`).
    pub backoff: u8,
    /// The retransmission timeout in force, in microseconds (already backed off).
    pub rto_us: u32,
    /// The smoothed round-trip time, in microseconds.
    pub rtt_us: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Segments retransmitted over the connection's life (`tcpi_total_retrans`).
    pub total_retrans: u32,
}

/// The TCP state names, indexed by the kernel's state number (`include/net/tcp_states.h`).
const STATES: [&str; 13] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

/// The timer names, indexed by `idiag_timer`.
const TIMERS: [&str; 5] = ["none", "retransmit", "keepalive", "time-wait", "probe"];

/// Every TCP socket of `family` (Inet or Inet6) in this thread's network namespace.
pub fn tcp_sockets(family: AddressFamily) -> io::Result<Vec<TcpSocket>> {
    Ok(dump(family, false)?.into_iter().map(|(s, _)| s).collect())
}

/// One dump of every TCP socket of `family`, each with its `tcp_info` when `with_info` asks
/// for it and the kernel has one (a request socket in SYN_RECV, a TIME_WAIT socket and a
/// listener carry none).
fn dump(family: AddressFamily, with_info: bool) -> io::Result<Vec<(TcpSocket, Option<TcpInfo>)>> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // A dump always ends with NLMSG_DONE; the timeout only guards against a kernel that never
    // answers.
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;

    let mut request = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    request.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    request.push(family as u8);
    request.push(nix::libc::IPPROTO_TCP as u8);
    request.push(if with_info { EXT_INFO } else { 0 });
    request.push(0);
    request.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    request.extend_from_slice(&[0u8; 48]); // socket id: ignored by a dump
    socket::sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;

    let mut sockets = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(truncated("empty netlink answer"));
        }
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let len = u32_at(&buf, at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < NLMSG_HDRLEN || at + len > n {
                return Err(truncated("netlink message length out of range"));
            }
            match kind {
                NLMSG_DONE => return Ok(sockets),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(
                        buf[at + NLMSG_HDRLEN..at + NLMSG_HDRLEN + 4]
                            .try_into()
                            .map_err(|_| truncated("netlink error too short"))?,
                    );
                    return Err(io::Error::from_raw_os_error(-code));
                }
                SOCK_DIAG_BY_FAMILY if len >= NLMSG_HDRLEN + MSG_LEN => {
                    let msg = &buf[at + NLMSG_HDRLEN..at + len];
                    sockets.push((parse(msg), parse_info(&msg[MSG_LEN..])));
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

/// Parses one `struct inet_diag_msg` (at least [`MSG_LEN`] bytes).
fn parse(msg: &[u8]) -> TcpSocket {
    let family = msg[0];
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let ip = |at: usize| -> IpAddr {
        if i32::from(family) == nix::libc::AF_INET6 {
            let mut b = [0u8; 16];
            b.copy_from_slice(&msg[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                msg[at],
                msg[at + 1],
                msg[at + 2],
                msg[at + 3],
            ))
        }
    };
    TcpSocket {
        local: SocketAddr::new(ip(8), port(4)),
        remote: SocketAddr::new(ip(24), port(6)),
        state: STATES
            .get(usize::from(msg[1]))
            .copied()
            .unwrap_or("UNKNOWN"),
        timer: TIMERS
            .get(usize::from(msg[2]))
            .copied()
            .unwrap_or("unknown"),
        retrans: msg[3],
        expires_ms: u32_at(msg, 52),
        recv_q: u32_at(msg, 56),
        send_q: u32_at(msg, 60),
        inode: u32_at(msg, 68),
    }
}

/// Finds the INET_DIAG_INFO attribute among the netlink attributes that follow the message,
/// and reads the fields of [`TcpInfo`] from it.
fn parse_info(mut attrs: &[u8]) -> Option<TcpInfo> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        let info = &attrs[4..len];
        if kind == INET_DIAG_INFO && info.len() >= TCP_INFO_LEN {
            return Some(TcpInfo {
                retransmits: info[2],
                backoff: info[4],
                rto_us: u32_at(info, 8),
                unacked: u32_at(info, 24),
                rtt_us: u32_at(info, 68),
                total_retrans: u32_at(info, 100),
            });
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"))
}

/// The socket with this local and remote address, if the kernel still has it.
pub fn find(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TcpSocket>> {
    Ok(tcp_sockets(crate::server::net::family(local))?
        .into_iter()
        .find(|s| s.local == local && s.remote == remote))
}

/// The `tcp_info` of the connection with this local and remote address, if the kernel still
/// has it as a full socket.
pub fn tcp_info(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TcpInfo>> {
    Ok(dump(crate::server::net::family(local), true)?
        .into_iter()
        .find(|(s, _)| s.local == local && s.remote == remote)
        .and_then(|(_, info)| info))
}

/// The state of the socket with this local and remote address, or `"gone"` when the kernel
/// holds no such socket any more.
pub fn state(local: SocketAddr, remote: SocketAddr) -> io::Result<&'static str> {
    Ok(find(local, remote)?.map_or("gone", |s| s.state))
}

/// The listening socket on `local`, if any.
pub fn listener(local: SocketAddr) -> io::Result<Option<TcpSocket>> {
    Ok(tcp_sockets(crate::server::net::family(local))?
        .into_iter()
        .find(|s| s.local == local && s.state == "LISTEN"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::net::{ListenOptions, listen};
    use std::net::TcpStream;

    /// The dump finds a listener with its backlog, and both ends of a connection.
    #[test]
    fn sees_a_listener_and_a_connection() {
        let opts = ListenOptions {
            backlog: 7,
            ..Default::default()
        };
        let listener = listen("127.0.0.1:0".parse().expect("addr"), &opts).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let client_addr = client.local_addr().expect("client addr");

        let l = super::listener(addr)
            .expect("dump")
            .expect("listener listed");
        assert_eq!(l.recv_q, 1, "one connection waits in the accept queue");
        assert_eq!(l.send_q, 7, "Send-Q is the backlog asked for");
        assert_eq!(state(client_addr, addr).expect("dump"), "ESTABLISHED");
        assert_eq!(state(addr, client_addr).expect("dump"), "ESTABLISHED");
    }

    /// An idle loopback connection's tcp_info: nothing unacknowledged, nothing retransmitted,
    /// an RTO no smaller than the kernel's 200 ms minimum.
    #[test]
    fn reads_tcp_info() {
        let listener = listen(
            "127.0.0.1:0".parse().expect("addr"),
            &ListenOptions::default(),
        )
        .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let client_addr = client.local_addr().expect("client addr");
        let info = tcp_info(client_addr, addr)
            .expect("dump")
            .expect("a full socket has tcp_info");
        assert_eq!(info.unacked, 0);
        assert_eq!(info.retransmits, 0);
        assert_eq!(info.total_retrans, 0);
        assert!(info.rto_us >= 200_000, "{info:?}");
        assert!(
            tcp_info(addr, "127.0.0.1:1".parse().expect("addr"))
                .expect("dump")
                .is_none()
        );
    }
}
