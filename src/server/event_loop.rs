//! What every readiness loop shares, so that `busy-poll`, `select`, `poll`, `epoll-lt` and
//! `epoll-et` differ only in how they wait for readiness:
//!
//! - **Serving a report.** A level-triggered loop (select, poll, epoll without EPOLLET) calls
//!   [`EventLoop::on_ready`]: one read per report, since the kernel reports the socket again
//!   while input is left, and the answer says what to change in what the loop waits for
//!   ([`Want`]: nothing, a new interest, or closed). An edge-triggered loop calls
//!   [`EventLoop::drain`]: reads to EAGAIN within a [`ReadBudget`], and the answer says whether
//!   input may be left that no edge will announce ([`Drained`]).
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

use crate::server::conn::{Conn, Interest, Next, Reads, Ready, Scratch};
use crate::server::meter::{WorkerCounter, WorkerMeter};
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

/// What a level-triggered loop must change in what it waits for, after
/// [`EventLoop::on_ready`].
#[derive(Debug)]
pub enum Want<'a> {
    /// Nothing: keep waiting as before.
    Unchanged,
    /// Wait for `interest` on `socket` from now on (an `epoll_ctl(MOD)`, a pollfd's `events`):
    /// output was left unsent, passed the cap, or drained.
    Changed {
        /// The connection's socket.
        socket: BorrowedFd<'a>,
        /// What it waits for now.
        interest: Interest,
    },
    /// It finished or failed and is closed; `close(2)` took it off every interest list.
    Closed,
}

/// Where an edge-triggered connection stands after [`EventLoop::drain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Read to EAGAIN (or a short read): the next edge will announce new input.
    Empty,
    /// Input may be left that no edge will announce (the read budget ran out, or output fell
    /// back under the cap): serve it again next turn without waiting for an event.
    InputLeft,
    /// It finished or failed and is closed.
    Closed,
}

/// Reads allowed per connection per turn in an edge-triggered loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBudget(pub usize);

/// Which descriptors a loop can watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdLimit {
    /// Any descriptor.
    None,
    /// Only those below this number (select's FD_SETSIZE): connections that get a higher one
    /// are closed at once, with one log line per episode.
    Below(usize),
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
    /// Counts every connection accepted, when this loop is one worker of several.
    counter: WorkerCounter,
    /// An episode of refusals past `fd_limit` is under way (logged once when it begins).
    refusing: bool,
    /// Out of descriptors: accepting waits until a connection closes or this instant passes.
    paused_until: Option<Instant>,
}

impl EventLoop {
    /// Takes over the context's listener (made nonblocking) and tuning; connections past
    /// `fd_limit` will be refused.
    pub fn new(ctx: ServeContext, fd_limit: FdLimit) -> io::Result<EventLoop> {
        ctx.listener.set_nonblocking(true)?;
        Ok(EventLoop {
            scratch: Scratch::new(&ctx.config),
            listener: ctx.listener,
            protocol: ctx.protocol,
            shutdown: ctx.shutdown,
            config: ctx.config,
            conns: ConnTable::default(),
            fd_limit: match fd_limit {
                FdLimit::None => None,
                FdLimit::Below(n) => Some(n),
            },
            counter: ctx.counter,
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
        self.conns.by_fd.len() as RawFd
    }

    /// Every open connection's socket and what it waits for, in descriptor order.
    pub fn interests(&self) -> impl Iterator<Item = (BorrowedFd<'_>, Interest)> {
        self.conns
            .by_fd
            .iter()
            .flatten()
            .map(|e| (e.conn.stream().as_fd(), e.conn.interest(&self.config)))
    }

    /// Whether the listener should be watched: false while out of descriptors.
    pub fn accepting(&self) -> bool {
        self.paused_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Accepts until the queue is empty (EAGAIN) or [`ACCEPT_BUDGET`] connections have been
    /// accepted, through [`net::accept`]. `watch` is called with each new socket and what it
    /// waits for first ([`Interest::READ`]), so that the loop can start waiting on it (an
    /// `epoll_ctl(ADD)`, a `pollfd`); a connection `watch` fails for is closed. Returns why it
    /// stopped.
    pub fn accept(
        &mut self,
        mut watch: impl FnMut(BorrowedFd<'_>, Interest) -> io::Result<()>,
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
            if let Err(e) = watch(stream.as_fd(), Interest::READ) {
                crate::event!("cannot watch a new connection ({e}); closed");
                continue;
            }
            self.counter.served();
            self.conns
                .insert(fd, Conn::new(stream, self.protocol), Interest::READ);
        }
        Ok(AcceptEnd::Budget)
    }

    /// Serves connection `fd` after a level-triggered readiness report (select, poll,
    /// epoll without EPOLLET): at most one read — the kernel reports the socket again while
    /// input is left — then whatever writing the report allows. Says what the loop must change
    /// in what it waits for; a connection that finishes or fails is closed here.
    pub fn on_ready(&mut self, fd: RawFd, ready: Ready) -> Want<'_> {
        match self.step(fd, ready, Reads::Once) {
            None => Want::Closed,
            Some(_) => {
                let Some(entry) = self.conns.entry_mut(fd) else {
                    return Want::Closed;
                };
                let now = entry.conn.interest(&self.config);
                if now == entry.told {
                    Want::Unchanged
                } else {
                    entry.told = now;
                    Want::Changed {
                        socket: entry.conn.stream().as_fd(),
                        interest: now,
                    }
                }
            }
        }
    }

    /// Serves connection `fd` after an edge-triggered readiness report (EPOLLET): reads until
    /// EAGAIN or `budget` reads, writes until EAGAIN or nothing is left. A connection that
    /// finishes or fails is closed here.
    pub fn drain(&mut self, fd: RawFd, ready: Ready, budget: ReadBudget) -> Drained {
        match self.step(fd, ready, Reads::Drain { budget: budget.0 }) {
            None => Drained::Closed,
            Some(Next::ReadAgain) => Drained::InputLeft,
            Some(Next::Wait | Next::Close) => Drained::Empty,
        }
    }

    /// One step of connection `fd`; `None` when it is closed (now, or earlier in the turn).
    fn step(&mut self, fd: RawFd, ready: Ready, reads: Reads) -> Option<Next> {
        let conn = self.conns.get_mut(fd)?;
        match conn.step(ready, reads, &mut self.scratch, &self.config) {
            Ok(Next::Close) | Err(_) => {
                // A reset peer (ECONNRESET, EPIPE) ends only its own connection.
                self.close(fd);
                None
            }
            Ok(next) => {
                // Without an idle timeout there is no timer to keep: no clock read, no relink.
                if conn.take_moved() && self.config.idle_timeout.is_some() {
                    conn.set_last_active(Instant::now());
                    self.conns.touch(fd);
                }
                Some(next)
            }
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

/// Runs `serve_one` — one event loop — on a thread per listener: the context's own, then
/// `more`. Each loop gets its own context and its worker's counter; at shutdown the model
/// prints how many connections each loop accepted. A loop that fails requests shutdown, so that
/// the others stop too, and its error is returned.
pub fn one_loop_per_thread(
    ctx: ServeContext,
    more: Vec<TcpListener>,
    serve_one: impl Fn(ServeContext) -> io::Result<()> + Sync,
) -> io::Result<()> {
    let ServeContext {
        listener,
        protocol,
        shutdown,
        config,
        counter: _,
    } = ctx;
    let listeners: Vec<TcpListener> = std::iter::once(listener).chain(more).collect();
    let meter = WorkerMeter::new(listeners.len())?;
    let result = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let ctx = ServeContext {
                listener,
                protocol,
                shutdown,
                config: config.clone(),
                counter: meter.counter(i),
            };
            let serve_one = &serve_one;
            let spawned = std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn_scoped(scope, move || {
                    let result = serve_one(ctx);
                    if result.is_err() {
                        shutdown.request();
                    }
                    result
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shutdown.request();
                    return Err(e);
                }
            }
        }
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")))
            })
            .fold(Ok(()), Result::and)
    });
    meter.report();
    result
}

/// A wait timeout for poll(2) and epoll_wait(2), in whole milliseconds rounded up, so that a
/// loop does not wake a fraction of a millisecond early and spin until its deadline passes.
pub fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
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
    by_fd: Vec<Option<Entry>>,
    len: usize,
    oldest: RawFd,
    newest: RawFd,
}

#[derive(Debug)]
struct Entry {
    conn: Conn,
    /// What the loop was last told this connection waits for, so that a level-triggered loop
    /// hears of a change only when there is one.
    told: Interest,
    older: RawFd,
    newer: RawFd,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            by_fd: Vec::new(),
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
        self.entry_mut(fd).map(|e| &mut e.conn)
    }

    fn entry(&self, fd: RawFd) -> Option<&Entry> {
        self.by_fd.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    fn entry_mut(&mut self, fd: RawFd) -> Option<&mut Entry> {
        self.by_fd.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    fn link(&mut self, fd: RawFd) -> &mut Entry {
        self.by_fd[fd as usize]
            .as_mut()
            .expect("linked descriptors are in the table")
    }

    fn oldest(&self) -> Option<&Conn> {
        self.get(self.oldest)
    }

    fn insert(&mut self, fd: RawFd, conn: Conn, told: Interest) {
        let i = fd as usize;
        if i >= self.by_fd.len() {
            self.by_fd.resize_with(i + 1, || None);
        }
        self.by_fd[i] = Some(Entry {
            conn,
            told,
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
        self.by_fd[fd as usize].take().map(|e| e.conn)
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
            t.insert(fd, c, Interest::READ);
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
    fn poll_timeout_rounds_up() {
        assert_eq!(poll_timeout(None), PollTimeout::NONE);
        assert_eq!(poll_timeout(Some(Duration::ZERO)), PollTimeout::ZERO);
        assert_eq!(
            poll_timeout(Some(Duration::from_micros(1))).as_millis(),
            Some(1)
        );
        assert_eq!(
            poll_timeout(Some(Duration::from_micros(1500))).as_millis(),
            Some(2)
        );
        assert_eq!(
            poll_timeout(Some(Duration::from_secs(u64::MAX))),
            PollTimeout::MAX
        );
    }
}
