//! `io-uring` — completion-based: the program does not ask "is this socket ready?" but submits
//! the operations themselves (accept, receive, send) to a ring shared with the kernel, and reaps
//! their results from a second ring. One thread, one ring.
//!
//! Syscalls, in order: `io_uring_setup` (with SINGLE_ISSUER and DEFER_TASKRUN: completions are
//! processed only when this thread asks), `io_uring_register` of a ring of provided buffers
//! ([`crate::server::uring::BufRing`]) and of a sparse table of registered files; then one loop around `io_uring_enter` (`submit_and_wait`), which
//! submits everything queued since the last turn and sleeps until at least one completion.
//! There are no `accept4`, `recv` or `send` calls: those are operations in the ring —
//! - one *multishot* accept on the listener: submitted once, it completes once per connection;
//! - one multishot receive per connection, taking buffers from the shared pool: an idle
//!   connection holds no buffer, and a completion says which buffer holds its bytes;
//! - a send per reply batch, from a buffer the connection owns until the send completes;
//! - each accepted socket is put in the registered file table (one `io_uring_register`, and one
//!   more before its close), and its receives and sends name it by slot (IOSQE_FIXED_FILE): the
//!   kernel then skips the descriptor lookup and the file reference count on every operation;
//! - a poll on the shutdown eventfd, and a timeout for the idle sweep — operations like the rest.
//!
//! The bytes are the same as every model's: completions feed the same sans-IO session through
//! [`conn::feed`](crate::server::conn::feed). Backpressure: while a connection's unsent output is past
//! `Config::out_cap`, its receive is cancelled and not re-armed until the peer drains it. Out
//! of descriptors, the accept completes with EMFILE and ends; it is re-armed when a connection
//! closes (or after a back-off), never at once — an accept re-armed at once would fail again,
//! a spin.
//!
//! Costs: one `io_uring_enter` per loop turn for any number of operations and completions,
//! where `epoll-lt` pays `epoll_wait` plus a `read` and a `write` per ready connection. The
//! buffer pool is fixed (1 024 × 4 KiB) whatever the number of connections. Where it breaks:
//! the reply buffer must not move while its send is in flight, so a connection keeps two
//! (the one in flight and the one filling); a kernel older than 5.19 has no buffer rings (the
//! model refuses to start, saying so), older than 6.0 no multishot receive (it falls back to one
//! receive at a time, with a log line). io_uring is often disabled by container seccomp
//! profiles. Compare with `epoll-lt` (readiness, one loop) and `tokio`. Notes:
//! `notes/io-uring.md`.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};
use nix::errno::Errno;
use nix::libc;

use crate::server::conn::lingering_close;
use crate::server::model::{Config, Model, ServeContext};
use crate::server::net::{self, Accepted};
use crate::server::protocol::Protocol;
use crate::server::uring::{Conn, Slots, Uring};

/// The shared receive pool: buffers × size.
const BUFFERS: u16 = 1024;
const BUF_SIZE: usize = 4096;
/// Submission queue entries; the completion queue is bigger, since one multishot operation can
/// complete many times per turn.
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 16 * 1024;

/// What an operation was, kept in the high half of its `user_data`; the low half is the
/// connection's slot.
mod op {
    pub const ACCEPT: u64 = 1;
    pub const RECV: u64 = 2;
    pub const SEND: u64 = 3;
    /// A cancellation aimed at one connection's operation: the slot stays taken until it ends.
    pub const CANCEL: u64 = 4;
    pub const SHUTDOWN: u64 = 5;
    pub const SWEEP: u64 = 6;
    pub const BACKOFF: u64 = 7;
    /// A cancellation of a server-wide operation (at shutdown).
    pub const OTHER: u64 = 8;
}

fn token(op: u64, slot: usize) -> u64 {
    op << 32 | slot as u64
}

/// Serves every connection from one io_uring.
pub struct IoUringModel;

impl Model for IoUringModel {
    fn name(&self) -> &'static str {
        "io-uring"
    }

    fn summary(&self) -> &'static str {
        "completion-based: multishot accept and recv with a shared buffer ring, one io_uring_enter per turn"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let uring = Uring::new(SQ_ENTRIES, CQ_ENTRIES, BUFFERS, BUF_SIZE)?;
        crate::event!(
            "io_uring: {BUFFERS} provided buffers of {BUF_SIZE} bytes; multishot accept and recv"
        );
        let sweep = ctx
            .config
            .idle_timeout
            .map(|t| timespec((t / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))));
        let mut server = Server {
            uring,
            conns: Slots::default(),
            listener: ctx.listener,
            protocol: ctx.protocol,
            config: ctx.config,
            multishot_accept: true,
            multishot_recv: true,
            accepting: false,
            paused: false,
            stopping: false,
            sweep,
            backoff: timespec(net::EXHAUSTED_BACKOFF),
            now: None,
        };
        let stop = opcode::PollAdd::new(
            types::Fd(ctx.shutdown.fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build();
        server.push(stop.user_data(token(op::SHUTDOWN, 0)));
        server.arm_accept();
        server.arm_sweep();
        server.run()
    }
}

/// A cancellation of `conn`'s operation `op`, counted on the connection so that its slot is not
/// reused (and the cancellation cannot hit the next connection's operation) until it completes.
fn cancel_for(conn: &mut Conn, op: u64, slot: usize) -> squeue::Entry {
    conn.cancels += 1;
    opcode::AsyncCancel::new(token(op, slot))
        .build()
        .user_data(token(op::CANCEL, slot))
}

fn timespec(d: Duration) -> Box<types::Timespec> {
    Box::new(types::Timespec::from(d))
}

/// The loop's state.
struct Server {
    uring: Uring,
    conns: Slots,
    listener: TcpListener,
    protocol: Protocol,
    config: Config,
    multishot_accept: bool,
    multishot_recv: bool,
    /// An accept is in flight.
    accepting: bool,
    /// Accepting stopped for want of descriptors, until a connection closes or the back-off ends.
    paused: bool,
    stopping: bool,
    /// The idle sweep's period (boxed: the kernel reads it at submission, from a fixed address).
    sweep: Option<Box<types::Timespec>>,
    backoff: Box<types::Timespec>,
    /// The clock, read once per turn, only when an idle timeout is configured.
    now: Option<Instant>,
}

impl Server {
    /// Reaps completions and submits what they call for, until shutdown has closed everything.
    fn run(&mut self) -> io::Result<()> {
        let mut done = Vec::with_capacity(CQ_ENTRIES as usize);
        while !(self.stopping && self.uring.inflight() == 0) {
            self.uring.turn(&mut done)?;
            self.now = self.config.idle_timeout.map(|_| Instant::now());
            for cqe in done.drain(..) {
                let (res, flags) = (cqe.result(), cqe.flags());
                let slot = (cqe.user_data() & 0xffff_ffff) as usize;
                match cqe.user_data() >> 32 {
                    op::ACCEPT => self.on_accept(res, flags)?,
                    op::RECV => self.on_recv(slot, res, flags),
                    op::SEND => self.on_send(slot, res),
                    op::CANCEL => {
                        if let Some(conn) = self.conns.get_mut(slot) {
                            conn.cancels -= 1;
                        }
                        self.settle(slot);
                    }
                    op::SHUTDOWN => self.stop(),
                    op::SWEEP => self.on_sweep(),
                    op::BACKOFF => self.resume_accept(),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every buffer an entry names outlives its operation: the send buffer is left
        // alone until the send completes (`Conn::sending`), receive buffers belong to the
        // buffer ring, which outlives the ring, and timespecs are boxed in `self`.
        unsafe { self.uring.push(&entry) };
    }

    fn cancel(&mut self, target: u64, as_op: u64, slot: usize) {
        self.push(
            opcode::AsyncCancel::new(target)
                .build()
                .user_data(token(as_op, slot)),
        );
    }

    fn arm_accept(&mut self) {
        if self.accepting || self.paused || self.stopping {
            return;
        }
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = if self.multishot_accept {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        self.push(entry.user_data(token(op::ACCEPT, 0)));
        self.accepting = true;
    }

    fn on_accept(&mut self, res: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.accepting = false;
        }
        if res >= 0 {
            // SAFETY: a successful accept completion carries a new descriptor nobody owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if !self.stopping {
                net::on_accepted(fd.as_fd());
                let slot = self
                    .conns
                    .insert(Conn::new(TcpStream::from(fd), self.protocol));
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.fixed = self.uring.register_file(slot, conn.stream.as_raw_fd());
                }
                self.settle(slot);
            }
        } else {
            match Errno::from_raw(-res) {
                Errno::EINVAL if self.multishot_accept => {
                    crate::event!(
                        "io_uring: multishot accept refused (Linux < 5.19?); one accept at a time"
                    );
                    self.multishot_accept = false;
                }
                Errno::ECANCELED => {}
                errno => match net::accept_failed(errno)? {
                    Accepted::Exhausted(_) => {
                        // Not re-armed now: it would fail again at once. A close, or the back-off
                        // timer, resumes it.
                        self.paused = true;
                        let backoff = opcode::Timeout::new(&*self.backoff).build();
                        self.push(backoff.user_data(token(op::BACKOFF, 0)));
                    }
                    Accepted::Closed => return Err(errno.into()),
                    Accepted::Conn(_) | Accepted::Again | Accepted::Empty => {}
                },
            }
        }
        self.arm_accept();
        Ok(())
    }

    fn resume_accept(&mut self) {
        self.paused = false;
        self.arm_accept();
    }

    fn on_recv(&mut self, slot: usize, res: i32, flags: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !cqueue::more(flags) {
            conn.recv_armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            conn.received(self.uring.bufs().get(bid, res.max(0) as usize));
            // The bytes are copied into the session's output or `pending`: the buffer goes back.
            self.uring.bufs_mut().recycle(bid);
        }
        match res {
            0 => conn.read_done = true,
            r if r > 0 => {
                if let Some(now) = self.now {
                    conn.last_active = now;
                }
            }
            // The pool ran dry (the multishot receive ended) or we cancelled it: `settle`
            // re-arms it if it is still wanted.
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
            r if r == -libc::EINVAL && self.multishot_recv => {
                crate::event!(
                    "io_uring: multishot recv refused (Linux < 6.0?); one recv at a time"
                );
                self.multishot_recv = false;
            }
            _ => conn.abort = true,
        }
        self.settle(slot);
    }

    fn on_send(&mut self, slot: usize, res: i32) {
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.sent(res);
            if let (true, Some(now)) = (res > 0, self.now) {
                conn.last_active = now;
            }
        }
        self.settle(slot);
    }

    /// Brings a connection's operations in line with its state: send what is owed, receive
    /// while under the output cap, cancel what is no longer wanted, close once nothing is in
    /// flight. Called after every event that touches the connection.
    fn settle(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let mut queue: [Option<squeue::Entry>; 2] = [None, None];
        if conn.finished() {
            // Finished: stop whatever is still in flight; close when the last one ends.
            if conn.cancels == 0 {
                if conn.recv_armed {
                    queue[0] = Some(cancel_for(conn, op::RECV, slot));
                }
                if conn.abort && conn.send_armed {
                    queue[1] = Some(cancel_for(conn, op::SEND, slot));
                }
            }
            if !conn.busy() {
                if let Some(conn) = self.conns.remove(slot) {
                    if let Some(fixed) = conn.fixed {
                        self.uring.unregister_file(fixed);
                    }
                    if !conn.abort {
                        lingering_close(&conn.stream);
                    }
                }
                self.resume_accept();
                return;
            }
        } else {
            if let Some(send) = conn.send_op() {
                queue[1] = Some(send.user_data(token(op::SEND, slot)));
            }
            let over_cap = conn.backlog() >= self.config.out_cap;
            if conn.cancels == 0 && !conn.recv_armed && !conn.read_done && !over_cap {
                let recv = conn.recv_op(self.uring.bufs(), self.multishot_recv);
                queue[0] = Some(recv.user_data(token(op::RECV, slot)));
            } else if conn.cancels == 0 && conn.recv_armed && over_cap {
                // Backpressure: the peer is not reading its replies, so stop receiving.
                queue[0] = Some(cancel_for(conn, op::RECV, slot));
            }
        }
        for entry in queue.into_iter().flatten() {
            self.push(entry);
        }
    }

    fn arm_sweep(&mut self) {
        if let (Some(period), false) = (&self.sweep, self.stopping) {
            let entry = opcode::Timeout::new(&**period)
                .build()
                .user_data(token(op::SWEEP, 0));
            self.push(entry);
        }
    }

    /// Every sweep period: close the connections idle for longer than the timeout.
    fn on_sweep(&mut self) {
        let (now, limit) = (Instant::now(), self.config.idle_timeout);
        for slot in 0..self.conns.end() {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if limit.is_some_and(|t| now.saturating_duration_since(conn.last_active) >= t) {
                conn.abort = true;
                self.settle(slot);
            }
        }
        self.arm_sweep();
    }

    /// Shutdown: cancel the server's own operations, abort every connection, and let `run`
    /// reap until nothing is in flight.
    fn stop(&mut self) {
        self.stopping = true;
        for op in [op::ACCEPT, op::SWEEP, op::BACKOFF] {
            self.cancel(token(op, 0), op::OTHER, 0);
        }
        for slot in 0..self.conns.end() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.abort = true;
                self.settle(slot);
            }
        }
    }
}
