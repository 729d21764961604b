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
            self.conns.insert(
                fd,
                Conn::new(stream, self.protocol.session_for(&self.config)),
                Interest::READ,
            );
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
                // Without a timeout there is no timer to keep: no clock read, no relink.
                let moved = conn.take_moved() && self.config.idle_timeout.is_some();
                let partial = conn.partial_request() && self.config.header_timeout.is_some();
                if moved || partial != self.conns.in_head_list(fd) {
                    let now = Instant::now();
                    if moved {
                        if let Some(conn) = self.conns.get_mut(fd) {
                            conn.set_last_active(now);
                        }
                        self.conns.touch(fd);
                    }
                    // The header deadline runs from the first byte of a request head, not from
                    // its latest: a client sending one byte a second is held to it too.
                    self.conns.set_partial(fd, partial, now);
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
    /// the oldest connection's idle deadline, the oldest incomplete request head's deadline, or
    /// the end of an accept pause. `None`: forever.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let idle = self
            .config
            .idle_timeout
            .zip(self.conns.oldest(Timer::Idle))
            .map(|(t, e)| e.conn.last_active() + t);
        let head = self
            .config
            .header_timeout
            .zip(self.conns.oldest(Timer::Head))
            .map(|(t, e)| e.head_since + t);
        [idle, head, self.paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    /// Closes the connections whose time is up, oldest first, calling `closed` with each
    /// descriptor number before it is closed (for loops that keep their own list of
    /// descriptors):
    /// - a request head incomplete for longer than the header timeout gets the protocol's
    ///   answer (HTTP's 408) and a close;
    /// - a connection with no byte moved for longer than the idle timeout is closed — unless
    ///   bytes can move now ([`net::bytes_can_move`]): input waiting in its socket, or output it
    ///   holds and the socket would take. A loop that was stopped (SIGSTOP, a long page fault)
    ///   comes back to bytes that arrived meanwhile; their connections are busy, not idle, and
    ///   are served on the next readiness report.
    pub fn sweep_timeouts(&mut self, mut closed: impl FnMut(RawFd)) {
        let now = Instant::now();
        if let Some(limit) = self.config.header_timeout {
            while let Some(entry) = self.conns.oldest(Timer::Head) {
                if now.saturating_duration_since(entry.head_since) < limit {
                    break;
                }
                let fd = entry.conn.stream().as_raw_fd();
                if let Some(conn) = self.conns.get_mut(fd) {
                    conn.head_timed_out(&mut self.scratch);
                }
                closed(fd);
                self.close(fd);
            }
        }
        if let Some(limit) = self.config.idle_timeout {
            while let Some(entry) = self.conns.oldest(Timer::Idle) {
                if now.saturating_duration_since(entry.conn.last_active()) < limit {
                    break;
                }
                let conn = &entry.conn;
                let fd = conn.stream().as_raw_fd();
                if net::bytes_can_move(conn.stream().as_fd(), conn.pending_output() > 0) {
                    if let Some(conn) = self.conns.get_mut(fd) {
                        conn.set_last_active(now);
                    }
                    self.conns.touch(fd);
                    continue;
                }
                closed(fd);
                self.close(fd);
            }
        }
    }

    /// Closes every connection, on shutdown: each one's pending output is written as far as
    /// its socket takes it, then it is closed with a FIN (after a short drain of its input, so
    /// that unread input does not turn the close into an RST).
    pub fn close_all(&mut self) {
        if self.conns.len > 0 {
            crate::event!(
                "shutdown: closing the {} open connection(s)",
                self.conns.len
            );
        }
        for entry in std::mem::take(&mut self.conns).by_fd.into_iter().flatten() {
            entry.conn.close_now();
        }
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

/// "No connection" in the lists' links.
const NIL: RawFd = -1;

/// The two timer lists a connection can be on. Every connection has the same idle timeout and
/// the same header timeout, so in each list the connection that started waiting first expires
/// first: a list ordered by that start is the whole timer structure, O(1) per update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Every connection, ordered by when a byte last moved.
    Idle,
    /// The connections holding an incomplete request head, ordered by when it began.
    Head,
}

/// A connection's place in one timer list.
#[derive(Clone, Copy, Debug)]
struct Link {
    older: RawFd,
    newer: RawFd,
}

const UNLINKED: Link = Link {
    older: NIL,
    newer: NIL,
};

/// The two ends of one timer list.
#[derive(Clone, Copy, Debug)]
struct Ends {
    oldest: RawFd,
    newest: RawFd,
}

const EMPTY: Ends = Ends {
    oldest: NIL,
    newest: NIL,
};

/// The open connections, indexed by descriptor number, threaded on the timer lists.
#[derive(Debug)]
struct ConnTable {
    by_fd: Vec<Option<Entry>>,
    len: usize,
    idle: Ends,
    head: Ends,
}

#[derive(Debug)]
struct Entry {
    conn: Conn,
    /// What the loop was last told this connection waits for, so that a level-triggered loop
    /// hears of a change only when there is one.
    told: Interest,
    idle: Link,
    /// Its place in the header-deadline list, while it holds an incomplete request head.
    head: Option<Link>,
    /// When the incomplete request head began (meaningful while `head` is `Some`).
    head_since: Instant,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            by_fd: Vec::new(),
            len: 0,
            idle: EMPTY,
            head: EMPTY,
        }
    }
}

impl ConnTable {
    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Conn> {
        self.entry_mut(fd).map(|e| &mut e.conn)
    }

    fn entry(&self, fd: RawFd) -> Option<&Entry> {
        self.by_fd.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    fn entry_mut(&mut self, fd: RawFd) -> Option<&mut Entry> {
        self.by_fd.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    fn ends(&mut self, timer: Timer) -> &mut Ends {
        match timer {
            Timer::Idle => &mut self.idle,
            Timer::Head => &mut self.head,
        }
    }

    /// `fd`'s link in `timer`'s list. Only called for descriptors on that list.
    fn link(&mut self, timer: Timer, fd: RawFd) -> &mut Link {
        let entry = self.by_fd[fd as usize]
            .as_mut()
            .expect("linked descriptors are in the table");
        match timer {
            Timer::Idle => &mut entry.idle,
            Timer::Head => entry.head.get_or_insert(UNLINKED),
        }
    }

    /// The entry that has waited longest in `timer`'s list.
    fn oldest(&self, timer: Timer) -> Option<&Entry> {
        let ends = match timer {
            Timer::Idle => self.idle,
            Timer::Head => self.head,
        };
        self.entry(ends.oldest)
    }

    fn in_head_list(&self, fd: RawFd) -> bool {
        self.entry(fd).is_some_and(|e| e.head.is_some())
    }

    fn insert(&mut self, fd: RawFd, conn: Conn, told: Interest) {
        let i = fd as usize;
        if i >= self.by_fd.len() {
            self.by_fd.resize_with(i + 1, || None);
        }
        self.by_fd[i] = Some(Entry {
            conn,
            told,
            idle: UNLINKED,
            head: None,
            head_since: Instant::now(),
        });
        self.len += 1;
        self.push_newest(Timer::Idle, fd);
    }

    fn remove(&mut self, fd: RawFd) -> Option<Conn> {
        let entry = self.entry(fd)?;
        let on_head = entry.head.is_some();
        self.unlink(Timer::Idle, fd);
        if on_head {
            self.unlink(Timer::Head, fd);
        }
        self.len -= 1;
        self.by_fd[fd as usize].take().map(|e| e.conn)
    }

    /// Moves `fd` to the newest end of the idle list: a byte just moved on it.
    fn touch(&mut self, fd: RawFd) {
        if self.idle.newest != fd {
            self.unlink(Timer::Idle, fd);
            self.push_newest(Timer::Idle, fd);
        }
    }

    /// Puts `fd` on the header-deadline list (from `now`) while it holds an incomplete request
    /// head, and takes it off when it no longer does.
    fn set_partial(&mut self, fd: RawFd, partial: bool, now: Instant) {
        match (partial, self.in_head_list(fd)) {
            (true, false) => {
                if let Some(entry) = self.entry_mut(fd) {
                    entry.head_since = now;
                }
                self.push_newest(Timer::Head, fd);
            }
            (false, true) => {
                self.unlink(Timer::Head, fd);
                if let Some(entry) = self.entry_mut(fd) {
                    entry.head = None;
                }
            }
            _ => {}
        }
    }

    fn push_newest(&mut self, timer: Timer, fd: RawFd) {
        let newest = self.ends(timer).newest;
        *self.link(timer, fd) = Link {
            older: newest,
            newer: NIL,
        };
        if newest == NIL {
            self.ends(timer).oldest = fd;
        } else {
            self.link(timer, newest).newer = fd;
        }
        self.ends(timer).newest = fd;
    }

    fn unlink(&mut self, timer: Timer, fd: RawFd) {
        let Link { older, newer } = *self.link(timer, fd);
        if older == NIL {
            self.ends(timer).oldest = newer;
        } else {
            self.link(timer, older).newer = newer;
        }
        if newer == NIL {
            self.ends(timer).newest = older;
        } else {
            self.link(timer, newer).older = older;
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
            ours.push(Conn::new(s, Protocol::Echo.session()));
        }
        (ours, peers, listener)
    }

    fn order(t: &ConnTable) -> Vec<RawFd> {
        let mut out = Vec::new();
        let mut fd = t.idle.oldest;
        while fd != NIL {
            out.push(fd);
            fd = t.entry(fd).expect("linked").idle.newer;
        }
        out
    }

    fn head_order(t: &ConnTable) -> Vec<RawFd> {
        let mut out = Vec::new();
        let mut fd = t.head.oldest;
        while fd != NIL {
            out.push(fd);
            fd = t.entry(fd).and_then(|e| e.head).expect("linked").newer;
        }
        out
    }

    /// The header-deadline list holds exactly the connections with an incomplete head, in the
    /// order their heads began, whatever happens on the idle list meanwhile.
    #[test]
    fn head_list_keeps_start_order() {
        let (cs, _peers, _l) = conns(3);
        let fds: Vec<RawFd> = cs.iter().map(|c| c.stream().as_raw_fd()).collect();
        let mut t = ConnTable::default();
        for c in cs {
            let fd = c.stream().as_raw_fd();
            t.insert(fd, c, Interest::READ);
        }
        let now = Instant::now();
        t.set_partial(fds[2], true, now);
        t.set_partial(fds[0], true, now);
        t.set_partial(fds[2], true, now); // already on it: unchanged
        t.touch(fds[2]);
        assert_eq!(head_order(&t), vec![fds[2], fds[0]]);
        t.set_partial(fds[2], false, now);
        assert_eq!(head_order(&t), vec![fds[0]]);
        assert!(!t.in_head_list(fds[2]) && t.in_head_list(fds[0]));
        t.set_partial(fds[1], true, now);
        assert!(t.remove(fds[0]).is_some());
        assert_eq!(head_order(&t), vec![fds[1]]);
        assert_eq!(order(&t), vec![fds[1], fds[2]]);
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
        assert_eq!((t.idle.oldest, t.idle.newest, t.len), (NIL, NIL, 0));
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
