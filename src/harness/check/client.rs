//! The loopback clients every case is made of: a connection with bounded waits, one exchange
//! checked byte for byte, an HTTP response read by its `Content-Length`, a read to the close,
//! an RST instead of a FIN, and bytes that make loss and misordering visible.
//!
//! Every wait is bounded ([`io_timeout`]), so a broken server fails a case instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};

/// How long any single client wait may take before the case fails instead of hanging, unless
/// [`set_io_timeout`] says otherwise: generous, for a loaded machine.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The wait in force, in milliseconds (process-wide: the cases' clients are made everywhere).
static IO_TIMEOUT_MS: AtomicU64 = AtomicU64::new(IO_TIMEOUT.as_millis() as u64);

/// How long any single client wait may take now.
pub fn io_timeout() -> Duration {
    Duration::from_millis(IO_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Sets the wait for every client made from now on (`check --timeout`): shorter fails a broken
/// server sooner, longer tolerates a slower one. At least 100 ms.
pub fn set_io_timeout(wait: Duration) {
    IO_TIMEOUT_MS.store(wait.as_millis().max(100) as u64, Ordering::Relaxed);
}

/// The request every HTTP case sends: HTTP/1.1 requires `Host` (RFC 9112 §3.2).
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// A loopback client with timeouts and `TCP_NODELAY`.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, io_timeout())?;
    s.set_read_timeout(Some(io_timeout()))?;
    s.set_write_timeout(Some(io_timeout()))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Writes `msg` and reads back exactly as many bytes; an error says how many came.
pub fn echo_exchange(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0; msg.len()];
    let mut got = 0;
    while got < back.len() {
        match s.read(&mut back[got..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {got} of {} echoed bytes", msg.len()),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{got} of {} echoed bytes within {:?}",
                        msg.len(),
                        io_timeout()
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(back)
}

/// One HTTP response: its status, its head as text, its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (0 if the status line did not parse).
    pub status: u16,
    /// The head, status line and headers, as text.
    pub head: String,
    /// The body, framed by `Content-Length` (empty without one).
    pub body: Vec<u8>,
}

/// Reads one HTTP response (head and `Content-Length` body), a byte at a time through the head
/// so that nothing of the next response is consumed.
pub fn read_http_response(s: &mut TcpStream) -> io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside a response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok(HttpResponse { status, head, body })
}

/// How a connection ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `read` returned 0: the peer sent a FIN after everything it wrote.
    Fin,
    /// `read` failed with ECONNRESET: the peer sent an RST (bytes it had sent and the client
    /// had not read may be lost).
    Reset,
}

/// Reads until the peer closes; returns the bytes and how it closed. A wait past the socket's
/// read timeout is an error, as is any failure other than a reset.
pub fn read_to_end(s: &mut TcpStream) -> io::Result<(Vec<u8>, Ending)> {
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((all, Ending::Fin)),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok((all, Ending::Reset));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads until EOF; `Ok(bytes)` if the peer closed (FIN or RST after the bytes).
pub fn read_to_close(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    read_to_end(s).map(|(bytes, _)| bytes)
}

/// Closes `s` with an RST instead of a FIN: with `SO_LINGER` on and a zero timeout, close(2)
/// aborts the connection with an RST and discards anything unsent (`__tcp_close` in
/// net/ipv4/tcp.c: unread data, or a zero linger time, means an abort).
pub fn reset(s: TcpStream) -> io::Result<()> {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&s.as_fd(), sockopt::Linger, &linger)?;
    drop(s);
    Ok(())
}

/// What an error means to a client, in words: a socket's read timeout surfaces as EAGAIN,
/// whose own text ("Resource temporarily unavailable") says nothing of what happened.
pub fn explain(e: &io::Error) -> String {
    // Only the kernel's own error: one made here (`echo_exchange`'s) already says what happened.
    if e.raw_os_error().is_some() && timed_out(e) {
        format!("nothing within {:?}", io_timeout())
    } else {
        e.to_string()
    }
}

/// Whether an error is a read or write timeout (the socket's own, as set by [`connect`]).
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Deterministic bytes that make misordering and loss visible.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
