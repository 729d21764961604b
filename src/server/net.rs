//! Listener setup and `accept`, with every way `accept` can fail sorted into what to do next.
//!
//! `accept(2)` fails for reasons that have nothing to do with the listener:
//! - EINTR: a signal arrived; try again (after checking for shutdown).
//! - ECONNABORTED (and EPROTO): the books' answer for a client that reset while its connection
//!   waited in the accept queue (已完成连接队列). Linux mostly does not use it: it hands the
//!   reset connection over, and the first read reports ECONNRESET (`server-models lab
//!   accept-reset` shows it). Either way: try again.
//! - EPERM: a firewall rule refused the connection. Try again.
//! - EMFILE/ENFILE (and ENOBUFS/ENOMEM): out of descriptors or memory. The connection stays in
//!   the queue, so a level-triggered listener stays readable and a loop that retries at once
//!   burns a whole CPU. Back off (blocking models) or stop watching the listener until a
//!   connection closes (event loops). Logged once per episode.
//! - EAGAIN: a nonblocking listener's queue is empty.
//! - EINVAL: the listener was shut down — by the signal handler, on shutdown.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt,
};

/// How a listener is set up.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// Length of the accept queue asked for; the kernel caps it at `net.core.somaxconn`.
    pub backlog: i32,
    /// `SO_REUSEPORT`, so that several listeners can bind the same address and the kernel
    /// spreads connections among them.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 4096,
            reuse_port: false,
        }
    }
}

/// The address family of a socket for `addr`: IPv4 or IPv6.
pub fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Creates a listening socket (监听套接字) on `addr`: socket, SO_REUSEADDR, bind, listen.
///
/// SO_REUSEADDR lets a restarted server bind while connections of its previous run sit in
/// TIME_WAIT. An address still in use despite it means another socket listens there, and the
/// error says so.
pub fn listen(addr: SocketAddr, opts: &ListenOptions) -> io::Result<TcpListener> {
    let fd = socket::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if opts.reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| match e {
        Errno::EADDRINUSE => io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "address {addr} is in use: another socket is listening on it. (Connections left \
                 in TIME_WAIT by an earlier run are not the cause: this server sets SO_REUSEADDR, \
                 which lets bind succeed past them.) Stop the other server or pick another port."
            ),
        ),
        e => io::Error::new(io::Error::from(e).kind(), format!("bind {addr}: {e}")),
    })?;
    socket::listen(&fd, Backlog::new(opts.backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// What one call to `accept` came to.
#[derive(Debug)]
pub enum Accepted {
    /// A new connection.
    Conn(TcpStream),
    /// Nothing lost: call again (EINTR, ECONNABORTED, EPROTO, EPERM).
    Again,
    /// A nonblocking listener's queue is empty (EAGAIN).
    Empty,
    /// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection waits in
    /// the queue until one is freed.
    Exhausted(Errno),
    /// The listener has been shut down (EINVAL): stop accepting.
    Closed,
}

/// Calls `accept4(2)` once; the new socket is close-on-exec, nonblocking if asked, and has
/// TCP_NODELAY set, since every reply is one write that should leave at once.
pub fn accept(listener: &TcpListener, nonblocking: bool) -> io::Result<Accepted> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    match socket::accept4(listener.as_raw_fd(), flags) {
        Ok(fd) => {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            on_accepted(fd.as_fd());
            Ok(Accepted::Conn(TcpStream::from(fd)))
        }
        Err(e) => accept_failed(e),
    }
}

/// Finishes a connection however it was accepted (`accept4`, an io_uring completion, an async
/// runtime): sets TCP_NODELAY, since every reply is one write that should leave at once, and
/// ends an episode of descriptor exhaustion if one was going on.
pub fn on_accepted(fd: BorrowedFd<'_>) {
    let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
    exhaustion_over();
}

/// Sorts an error from accept, however it was called, into what to do next (see the module
/// docs); the start of an exhaustion episode is logged once.
pub fn accept_failed(e: Errno) -> io::Result<Accepted> {
    match e {
        Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO | Errno::EPERM => Ok(Accepted::Again),
        Errno::EAGAIN => Ok(Accepted::Empty),
        Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => {
            exhaustion_began(e);
            Ok(Accepted::Exhausted(e))
        }
        Errno::EINVAL => Ok(Accepted::Closed),
        e => Err(e.into()),
    }
}

/// How long a blocking accept loop waits after EMFILE before trying again. Long enough not to
/// spin, short enough that a freed descriptor is used soon.
pub const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts the next connection on a blocking listener; `None` once the listener is shut down
/// or shutdown is requested. Out of descriptors, it sleeps [`EXHAUSTED_BACKOFF`] between tries
/// rather than spinning.
pub fn accept_blocking(
    listener: &TcpListener,
    shutdown: &crate::server::shutdown::Shutdown,
) -> io::Result<Option<TcpStream>> {
    loop {
        if shutdown.requested() {
            return Ok(None);
        }
        match accept(listener, false)? {
            Accepted::Conn(stream) => return Ok(Some(stream)),
            Accepted::Again | Accepted::Empty => continue,
            Accepted::Exhausted(_) => std::thread::sleep(EXHAUSTED_BACKOFF),
            Accepted::Closed => return Ok(None),
        }
    }
}

/// Whether the process is in an episode of descriptor exhaustion, so that it is logged once
/// when it begins and once when it ends, not once per failed accept.
static EXHAUSTED: AtomicBool = AtomicBool::new(false);

fn exhaustion_began(e: Errno) {
    if !EXHAUSTED.swap(true, Ordering::Relaxed) {
        crate::event!(
            "accept: {} ({}); new connections wait in the accept queue until one closes",
            e,
            e.desc()
        );
    }
}

fn exhaustion_over() {
    if EXHAUSTED.load(Ordering::Relaxed) && EXHAUSTED.swap(false, Ordering::Relaxed) {
        crate::event!("accept: descriptors available again; accepting");
    }
}

nix::ioctl_read_bad!(
    /// SIOCINQ (the same number as FIONREAD) on a TCP socket: how many bytes wait in its
    /// receive queue, unread (tcp(7)).
    siocinq,
    nix::libc::FIONREAD,
    nix::libc::c_int
);

/// Whether bytes can move on a connection right now: input waits in its receive queue
/// (SIOCINQ), or — when `holds_output` — its send buffer has room for the output the server
/// holds (a zero-timeout poll for POLLOUT). A connection past its idle deadline is not idle while
/// either is true. Two syscalls at most, made only for a connection whose idle time is up.
pub fn bytes_can_move(socket: BorrowedFd<'_>, holds_output: bool) -> bool {
    let mut queued: nix::libc::c_int = 0;
    // SAFETY: SIOCINQ writes one c_int to the pointer, which points at a live c_int.
    if unsafe { siocinq(socket.as_raw_fd(), &mut queued) }.is_ok() && queued > 0 {
        return true;
    }
    if !holds_output {
        return false;
    }
    let mut fds = [PollFd::new(socket, PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLOUT))
}

/// Whether an I/O error is the OS saying "not ready yet" rather than a failure.
#[inline]
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Whether an I/O error is a signal interrupting the call: try again.
#[inline]
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
