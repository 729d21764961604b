//! What every event loop shares, so that `busy-poll`, `select`, `poll`, `epoll-lt` and
//! `epoll-et` differ only in how they wait for readiness:
//!
//! - **The table of connections**, indexed by descriptor number. The kernel hands out the
//!   lowest free number, so the numbers stay dense and a `Vec` is the cheapest map there is;
//!   readiness reports carry the number, so finding the connection costs one index.
//! - **Accepting** on a nonblocking listener until EAGAIN (or a per-turn budget), through
//!   [`net::accept`], which turns ECONNABORTED, EPROTO, EINTR and EPERM into "try again": a
//!   client that resets between the readiness report and `accept` costs one retry, and can
//!   never block the loop, because the listener is nonblocking.
//! - **Running out of descriptors** (EMFILE, ENFILE): the connection stays in the accept queue,
//!   so a level-triggered listener stays readable and a loop that kept watching it would spin
//!   at 100% CPU. [`EventLoop::accepting`] turns false: the loops stop watching the listener
//!   until a connection closes (a descriptor is free again) or [`EXHAUSTED_BACKOFF`] has passed
//!   (the shortage may be system-wide, ENFILE, and end without any help from us). The episode
//!   is logged once by `net`.
//! - **The idle timeout.** Every connection has the same timeout, so the one idle longest
//!   always expires first, and a list ordered by last activity is the whole timer structure:
//!   when a byte moves, its connection moves to the tail (O(1): four links rewritten); the sweep
//!   pops expired connections from the head (O(1) each, nothing scanned when none expired); and
//!   the head's deadline is the timeout the loop passes to select/poll/epoll_wait, so the loop
//!   sleeps until exactly the next expiry, with no periodic tick. It costs two descriptor
//!   numbers (8 bytes) per connection. A heap (O(log n) per update) or a timing wheel is only
//!   needed when timeouts differ per connection. The clock is read once per readiness report
//!   that moved a byte, and never when no timeout is configured: at ~100 000 requests/s a clock
//!   read per read and per write was a visible share of the user-space work.
//! - **Shutdown**: the loops wait on [`Shutdown::fd`] beside their sockets (an eventfd the
//!   signal handler writes), then [`EventLoop::close_all`].

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;

use crate::server::conn::{Conn, Interest, Scratch, Step};
use crate::server::model::{Config, ServeContext};
use crate::server::net::{self, Accepted, EXHAUSTED_BACKOFF};
use crate::server::protocol::Protocol;
use crate::server::shutdown::Shutdown;

/// Connections accepted per turn at most, so that a flood of new clients cannot starve the
/// connections already open; the rest are accepted next turn.
pub const ACCEPT_BUDGET: usize = 64;

/// How a call to [`EventLoop::accept`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptEnd {
    /// The accept queue is empty (EAGAIN).
    Drained,
    /// [`ACCEPT_BUDGET`] connections were accepted; more may be waiting.
    Budget,
    /// Out of descriptors: stop watching the listener while [`EventLoop::accepting`] is false.
    Paused,
}

/// The state every event loop shares: the listener, the connections, the scratch buffers.
#[derive(Debug)]
pub struct EventLoop {
    listener: TcpListener,
    protocol: Protocol,
    shutdown: Shutdown,
    config: Config,
    conns: ConnTable,
    scratch: Scratch,
    /// Descriptors at or past this number are refused (select's FD_SETSIZE).
    fd_limit: Option<usize>,
    /// An episode of refusals past `fd_limit` is under way (logged once when it begins).
    refusing: bool,
    /// Out of descriptors: accepting waits until a connection closes or this instant passes.
    paused_until: Option<Instant>,
}

impl EventLoop {
    /// Takes over the context's listener (made nonblocking) and tuning. Connections whose
    /// descriptor number is `fd_limit` or more will be refused.
    pub fn new(ctx: ServeContext, fd_limit: Option<usize>) -> io::Result<EventLoop> {
        ctx.listener.set_nonblocking(true)?;
        Ok(EventLoop {
            scratch: Scratch::new(&ctx.config),
            listener: ctx.listener,
            protocol: ctx.protocol,
            shutdown: ctx.shutdown,
            config: ctx.config,
            conns: ConnTable::default(),
            fd_limit,
            refusing: false,
            paused_until: None,
        })
    }

    /// The listening socket.
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The descriptor that becomes readable when shutdown is requested.
    pub fn shutdown_fd(&self) -> BorrowedFd<'static> {
        self.shutdown.fd()
    }

    /// Whether shutdown has been requested.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.requested()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.len
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.len == 0
    }

    /// One past the highest descriptor number a connection has had: every connection's number
    /// is below it.
    pub fn fd_bound(&self) -> RawFd {
        self.conns.slots.len() as RawFd
    }

    /// Every open connection's socket and what it waits for, in descriptor order.
    pub fn interests(&self) -> impl Iterator<Item = (BorrowedFd<'_>, Interest)> {
        self.conns
            .slots
            .iter()
            .flatten()
            .map(|e| (e.conn.stream().as_fd(), e.conn.interest(&self.config)))
    }

    /// The socket of connection `fd`; `None` if it is not an open connection.
    pub fn socket(&self, fd: RawFd) -> Option<BorrowedFd<'_>> {
        self.conns.get(fd).map(|c| c.stream().as_fd())
    }

    /// What connection `fd` waits for; `None` if it is not an open connection.
    pub fn interest(&self, fd: RawFd) -> Option<Interest> {
        self.conns.get(fd).map(|c| c.interest(&self.config))
    }

    /// Whether the listener should be watched: false while out of descriptors.
    pub fn accepting(&self) -> bool {
        self.paused_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Accepts up to [`ACCEPT_BUDGET`] connections, calling `watch` with each new socket so
    /// that the loop can start waiting on it (an `epoll_ctl`, a `pollfd`); a connection `watch`
    /// fails for is closed. Returns why it stopped.
    pub fn accept(
        &mut self,
        mut watch: impl FnMut(BorrowedFd<'_>) -> io::Result<()>,
    ) -> io::Result<AcceptEnd> {
        for _ in 0..ACCEPT_BUDGET {
            let stream = match net::accept(&self.listener, true)? {
                Accepted::Conn(stream) => stream,
                Accepted::Again => continue,
                Accepted::Empty => return Ok(AcceptEnd::Drained),
                Accepted::Exhausted(_) => {
                    self.paused_until = Some(Instant::now() + EXHAUSTED_BACKOFF);
                    return Ok(AcceptEnd::Paused);
                }
                Accepted::Closed => {
                    return Err(io::Error::other("the listening socket was shut down"));
                }
            };
            let fd = stream.as_raw_fd();
            if let Some(limit) = self.fd_limit {
                if fd as usize >= limit {
                    if !self.refusing {
                        self.refusing = true;
                        crate::event!(
                            "a new connection got descriptor {fd}, and this model can watch only \
                             those below {limit}: closing new connections until an open one closes"
                        );
                    }
                    continue; // dropping the stream closes it
                }
                if self.refusing {
                    self.refusing = false;
                    crate::event!("descriptors below {limit} free again; accepting");
                }
            }
            if let Err(e) = watch(stream.as_fd()) {
                crate::event!("cannot watch a new connection ({e}); closed");
                continue;
            }
            self.conns.insert(fd, Conn::new(stream, self.protocol));
        }
        Ok(AcceptEnd::Budget)
    }

    /// Serves connection `fd` after a readiness report: reads (up to `max_reads` times) if
    /// `readable`, else writes if `writable`. A connection that finishes or fails is closed, and
    /// `Step::Done` returned; `Step::Done` also when `fd` is no longer open (closed earlier in
    /// the same turn).
    pub fn on_ready(
        &mut self,
        fd: RawFd,
        readable: bool,
        writable: bool,
        max_reads: usize,
    ) -> Step {
        let Some(conn) = self.conns.get_mut(fd) else {
            return Step::Done;
        };
        let step = if readable {
            conn.on_readable(&mut self.scratch, &self.config, max_reads)
        } else if writable {
            conn.on_writable(&self.config)
        } else {
            Ok(Step::Open)
        };
        match step {
            Ok(Step::Done) | Err(_) => {
                // A reset peer (ECONNRESET, EPIPE) ends only its own connection.
                self.close(fd);
                Step::Done
            }
            Ok(step) => {
                // Without an idle timeout there is no timer to keep: no clock read, no relink.
                if conn.take_moved() && self.config.idle_timeout.is_some() {
                    conn.set_last_active(Instant::now());
                    self.conns.touch(fd);
                }
                step
            }
        }
    }

    /// Tells connection `fd` that its peer's FIN has arrived (see [`Conn::saw_hangup`]).
    pub fn saw_hangup(&mut self, fd: RawFd) {
        if let Some(conn) = self.conns.get_mut(fd) {
            conn.saw_hangup();
        }
    }

    /// Closes connection `fd`. A descriptor is free again, so accepting resumes if it paused.
    pub fn close(&mut self, fd: RawFd) {
        if self.conns.remove(fd).is_some() {
            self.paused_until = None;
        }
    }

    /// How long the loop may wait before it has something to do without a readiness report:
    /// the oldest connection's idle deadline, or the end of an accept pause. `None`: forever.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let idle = self
            .config
            .idle_timeout
            .zip(self.conns.oldest())
            .map(|(t, conn)| (conn.last_active() + t).saturating_duration_since(now));
        let pause = self.paused_until.map(|t| t.saturating_duration_since(now));
        match (idle, pause) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes every connection idle past the timeout, oldest first, calling `closed` with each
    /// descriptor number before it is closed (for loops that keep their own list of descriptors).
    pub fn sweep_idle(&mut self, mut closed: impl FnMut(RawFd)) {
        let now = Instant::now();
        while let Some(conn) = self.conns.oldest() {
            if !conn.idle_expired(&self.config, now) {
                break;
            }
            let fd = conn.stream().as_raw_fd();
            closed(fd);
            self.close(fd);
        }
    }

    /// Closes every connection, on shutdown.
    pub fn close_all(&mut self) {
        if self.conns.len > 0 {
            crate::event!(
                "shutdown: closing the {} open connection(s)",
                self.conns.len
            );
        }
        self.conns = ConnTable::default();
    }
}

/// A wait timeout for poll(2) and epoll_wait(2), in whole milliseconds rounded up, so that a
/// loop does not wake a fraction of a millisecond early and spin until its deadline passes.
pub fn millis(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// "No connection" in the idle list's links.
const NIL: RawFd = -1;

/// The open connections, indexed by descriptor number, threaded on a list ordered by last
/// activity (oldest at the head) for the idle timeout.
#[derive(Debug)]
struct ConnTable {
    slots: Vec<Option<Entry>>,
    len: usize,
    oldest: RawFd,
    newest: RawFd,
}

#[derive(Debug)]
struct Entry {
    conn: Conn,
    older: RawFd,
    newer: RawFd,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            slots: Vec::new(),
            len: 0,
            oldest: NIL,
            newest: NIL,
        }
    }
}

impl ConnTable {
    fn get(&self, fd: RawFd) -> Option<&Conn> {
        self.entry(fd).map(|e| &e.conn)
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Conn> {
        self.slots
            .get_mut(fd as usize)?
            .as_mut()
            .map(|e| &mut e.conn)
    }

    fn entry(&self, fd: RawFd) -> Option<&Entry> {
        self.slots.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    fn link(&mut self, fd: RawFd) -> &mut Entry {
        self.slots[fd as usize]
            .as_mut()
            .expect("linked descriptors are in the table")
    }

    fn oldest(&self) -> Option<&Conn> {
        self.get(self.oldest)
    }

    fn insert(&mut self, fd: RawFd, conn: Conn) {
        let i = fd as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(Entry {
            conn,
            older: NIL,
            newer: NIL,
        });
        self.len += 1;
        self.push_newest(fd);
    }

    fn remove(&mut self, fd: RawFd) -> Option<Conn> {
        self.entry(fd)?;
        self.unlink(fd);
        self.len -= 1;
        self.slots[fd as usize].take().map(|e| e.conn)
    }

    /// Moves `fd` to the newest end of the list: a byte just moved on it.
    fn touch(&mut self, fd: RawFd) {
        if self.newest != fd {
            self.unlink(fd);
            self.push_newest(fd);
        }
    }

    fn push_newest(&mut self, fd: RawFd) {
        let newest = self.newest;
        let entry = self.link(fd);
        entry.older = newest;
        entry.newer = NIL;
        if newest == NIL {
            self.oldest = fd;
        } else {
            self.link(newest).newer = fd;
        }
        self.newest = fd;
    }

    fn unlink(&mut self, fd: RawFd) {
        let (older, newer) = {
            let e = self.link(fd);
            (e.older, e.newer)
        };
        if older == NIL {
            self.oldest = newer;
        } else {
            self.link(older).newer = newer;
        }
        if newer == NIL {
            self.newest = older;
        } else {
            self.link(newer).older = older;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Connections for the table, with distinct descriptors (the peers are kept alive).
    fn conns(n: usize) -> (Vec<Conn>, Vec<TcpStream>, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut ours = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..n {
            peers.push(TcpStream::connect(addr).expect("connect"));
            let (s, _) = listener.accept().expect("accept");
            ours.push(Conn::new(s, Protocol::Echo));
        }
        (ours, peers, listener)
    }

    fn order(t: &ConnTable) -> Vec<RawFd> {
        let mut out = Vec::new();
        let mut fd = t.oldest;
        while fd != NIL {
            out.push(fd);
            fd = t.entry(fd).expect("linked").newer;
        }
        out
    }

    /// The idle list stays ordered by last activity through inserts, touches and removals.
    #[test]
    fn idle_list_keeps_activity_order() {
        let (cs, _peers, _l) = conns(4);
        let fds: Vec<RawFd> = cs.iter().map(|c| c.stream().as_raw_fd()).collect();
        let mut t = ConnTable::default();
        for c in cs {
            let fd = c.stream().as_raw_fd();
            t.insert(fd, c);
        }
        assert_eq!(order(&t), fds);
        t.touch(fds[0]);
        assert_eq!(order(&t), vec![fds[1], fds[2], fds[3], fds[0]]);
        t.touch(fds[0]); // already newest: unchanged
        assert_eq!(order(&t), vec![fds[1], fds[2], fds[3], fds[0]]);
        assert!(t.remove(fds[2]).is_some());
        assert_eq!(order(&t), vec![fds[1], fds[3], fds[0]]);
        assert!(t.remove(fds[1]).is_some());
        assert!(t.remove(fds[0]).is_some());
        assert_eq!(order(&t), vec![fds[3]]);
        assert_eq!(t.len, 1);
        assert!(t.remove(fds[1]).is_none(), "removing twice finds nothing");
        assert!(t.remove(fds[3]).is_some());
        assert_eq!((t.oldest, t.newest, t.len), (NIL, NIL, 0));
    }

    /// Wait timeouts round up to whole milliseconds, so a loop never wakes early and spins.
    #[test]
    fn millis_rounds_up() {
        assert_eq!(millis(None), PollTimeout::NONE);
        assert_eq!(millis(Some(Duration::ZERO)), PollTimeout::ZERO);
        assert_eq!(millis(Some(Duration::from_micros(1))).as_millis(), Some(1));
        assert_eq!(
            millis(Some(Duration::from_micros(1500))).as_millis(),
            Some(2)
        );
        assert_eq!(
            millis(Some(Duration::from_secs(u64::MAX))),
            PollTimeout::MAX
        );
    }
}
