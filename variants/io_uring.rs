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
//! [`conn::feed`](crate::server::conn::feed). Backpressure: a connection's receive is armed only
//! while its unsent output is under `Config::out_cap`, with a byte cap of the room left (a
//! multishot receive capped in `sqe->optlen`, Linux 6.17: the kernel ends it at the cap), and is
//! not re-armed until the peer drains the output; where the cap is refused, an uncapped receive
//! is cancelled once past it ([`RecvMode`]). Out
//! of descriptors, the accept completes with EMFILE and ends; it is re-armed when a connection
//! closes (or after a back-off), never at once — an accept re-armed at once would fail again,
//! a spin.
//!
//! Costs: one `io_uring_enter` per loop turn for any number of operations and completions,
//! where `epoll-lt` pays `epoll_wait` plus a `read` and a `write` per ready connection. The
//! buffer pool is fixed (1 024 × 4 KiB) whatever the number of connections. Where it breaks:
//! the reply buffer must not move while its send is in flight, so a connection keeps two
//! (the one in flight and the one filling); a kernel older than 5.19 has no buffer rings (the
//! model refuses to start, saying so), older than 6.17 no byte cap on a multishot receive, older
//! than 6.0 no multishot receive (it falls back to an uncapped receive, then to one receive at a
//! time, with a log line each). io_uring is often disabled by container seccomp
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
use crate::server::uring::{
    ConnId, ConnOp, Limits, OpKind, RecvMode, RingConn, RingConns, Settle, TurnClock, Uring,
};

/// The shared receive pool: buffers × size.
const BUFFERS: u16 = 1024;
const BUF_SIZE: usize = 4096;
/// Submission queue entries; the completion queue is bigger, since one multishot operation can
/// complete many times per turn.
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 16 * 1024;
/// How long a graceful shutdown waits for connections to take their last replies before
/// aborting them: well inside the 5 s an operator (or the conformance suite) allows.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// Every operation this loop submits, as its `user_data` names it: what a completion is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// The accept on the listener (multishot: one completion per connection).
    Accept,
    /// A connection's receive (multishot: one completion per burst of bytes).
    Recv(ConnId),
    /// A connection's send.
    Send(ConnId),
    /// A cancellation aimed at one of a connection's operations: the connection keeps its id
    /// until the cancellation completes.
    CancelConn(ConnId),
    /// The poll on the shutdown eventfd.
    Shutdown,
    /// The idle sweep's timer.
    Sweep,
    /// The timer that resumes accepting after running out of descriptors.
    Backoff,
    /// The timer that ends a graceful shutdown: connections still flushing then are aborted.
    StopDeadline,
    /// A cancellation of one of the server's own operations, at shutdown.
    CancelServer,
}

impl Op {
    /// The operation's `user_data`: a tag in the high half, the connection's id in the low.
    fn encode(self) -> u64 {
        let (tag, id) = match self {
            Op::Accept => (1, 0),
            Op::Recv(ConnId(id)) => (2, id),
            Op::Send(ConnId(id)) => (3, id),
            Op::CancelConn(ConnId(id)) => (4, id),
            Op::Shutdown => (5, 0),
            Op::Sweep => (6, 0),
            Op::Backoff => (7, 0),
            Op::CancelServer => (8, 0),
            Op::StopDeadline => (9, 0),
        };
        (tag << 32) | u64::from(id)
    }

    /// The operation a completion's `user_data` names; `None` for a value no operation carries.
    fn decode(user_data: u64) -> Option<Op> {
        let id = ConnId(user_data as u32);
        Some(match user_data >> 32 {
            1 => Op::Accept,
            2 => Op::Recv(id),
            3 => Op::Send(id),
            4 => Op::CancelConn(id),
            5 => Op::Shutdown,
            6 => Op::Sweep,
            7 => Op::Backoff,
            8 => Op::CancelServer,
            9 => Op::StopDeadline,
            _ => return None,
        })
    }
}

/// Where accepting stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepting {
    /// An accept is in flight.
    Armed,
    /// None is: arm one.
    Idle,
    /// Out of descriptors: none is armed until a connection closes or the back-off ends.
    Paused,
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
        // The sweep looks for idle connections and overdue request heads: twice per the
        // shorter timeout, between 10 ms and 1 s.
        let sweep = [ctx.config.idle_timeout, ctx.config.header_timeout]
            .into_iter()
            .flatten()
            .min()
            .map(|t| timespec((t / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))));
        let limits = Limits {
            out_cap: ctx.config.out_cap,
            time_heads: ctx.config.header_timeout.is_some(),
        };
        let mut server = Server {
            uring,
            conns: RingConns::default(),
            listener: ctx.listener,
            protocol: ctx.protocol,
            config: ctx.config,
            multishot_accept: true,
            recv_mode: RecvMode::CappedMultishot,
            accepting: Accepting::Idle,
            stopping: false,
            sweep,
            backoff: timespec(net::EXHAUSTED_BACKOFF),
            stop_deadline: timespec(STOP_DEADLINE),
            clock: TurnClock::default(),
            limits,
        };
        let stop = opcode::PollAdd::new(
            types::Fd(ctx.shutdown.fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build();
        server.push(stop, Op::Shutdown);
        server.arm_accept();
        server.arm_sweep();
        server.run()
    }
}

fn timespec(d: Duration) -> Box<types::Timespec> {
    Box::new(types::Timespec::from(d))
}

/// The loop's state.
struct Server {
    uring: Uring,
    conns: RingConns,
    listener: TcpListener,
    protocol: Protocol,
    config: Config,
    /// The kernel takes multishot accepts (Linux 5.19).
    multishot_accept: bool,
    /// How receives are made: the best the kernel has taken so far.
    recv_mode: RecvMode,
    accepting: Accepting,
    /// Shutdown: every connection is being aborted; nothing new is armed.
    stopping: bool,
    /// The idle sweep's period (boxed: the kernel reads it at submission, from a fixed address).
    sweep: Option<Box<types::Timespec>>,
    backoff: Box<types::Timespec>,
    stop_deadline: Box<types::Timespec>,
    /// The clock, read at most once per turn, only when a timeout needs it.
    clock: TurnClock,
    /// The limits every connection's policy reads.
    limits: Limits,
}

impl Server {
    /// Reaps completions and submits what they call for, until shutdown has closed everything.
    fn run(&mut self) -> io::Result<()> {
        let mut done = Vec::with_capacity(CQ_ENTRIES as usize);
        while !(self.stopping && self.uring.inflight() == 0) {
            self.uring.turn(&mut done)?;
            self.clock.next_turn();
            // The sweep runs after every other completion of the turn: after a stall (the
            // process stopped), the bytes that arrived meanwhile are in this very batch, and
            // their connections are not idle.
            let mut sweep_due = false;
            for cqe in done.drain(..) {
                let (res, more) = (cqe.result(), cqueue::more(cqe.flags()));
                let Some(op) = Op::decode(cqe.user_data()) else {
                    crate::event!("io_uring: a completion for no operation ({cqe:?}); ignored");
                    continue;
                };
                match op {
                    Op::Accept => self.on_accept(res, more)?,
                    Op::Recv(id) => self.on_recv(id, res, cqe.flags()),
                    Op::Send(id) => self.on_send(id, res),
                    Op::CancelConn(id) => {
                        if let Some(conn) = self.conns.get_mut(id) {
                            conn.cancelled();
                        }
                        self.settle(id);
                    }
                    Op::Shutdown => self.stop(),
                    Op::Sweep => sweep_due = true,
                    Op::Backoff => self.resume_accept(),
                    Op::StopDeadline => self.abort_all(),
                    // The server's own operations, cancelled at shutdown: nothing to do.
                    Op::CancelServer => {}
                }
            }
            if sweep_due {
                self.on_sweep();
            }
        }
        Ok(())
    }

    /// Queues `entry` as operation `op`.
    fn push(&mut self, entry: squeue::Entry, op: Op) {
        let entry = entry.user_data(op.encode());
        // SAFETY: every buffer an entry names outlives its operation: a send's bytes are left
        // alone until the send completes (`RingConn::sent`), receive buffers belong to the
        // buffer ring, which outlives the ring, and timespecs are boxed in `self`.
        unsafe { self.uring.push(&entry) };
    }

    /// Cancels the operation `target`, as operation `op`.
    fn cancel(&mut self, target: Op, op: Op) {
        self.push(opcode::AsyncCancel::new(target.encode()).build(), op);
    }

    fn arm_accept(&mut self) {
        if self.accepting != Accepting::Idle || self.stopping {
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
        self.push(entry, Op::Accept);
        self.accepting = Accepting::Armed;
    }

    /// An accept completed: `res` is a new descriptor or a negative errno; `more` says whether
    /// the (multishot) accept is still armed.
    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more && self.accepting == Accepting::Armed {
            self.accepting = Accepting::Idle;
        }
        if res >= 0 {
            // SAFETY: a successful accept completion carries a new descriptor nobody owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if !self.stopping {
                net::on_accepted(fd.as_fd());
                // The connection's id is also its slot in the registered file table.
                let id = self.conns.next_id();
                let file_slot = self.uring.register_file(id.0, fd.as_raw_fd());
                let id =
                    self.conns
                        .insert(RingConn::new(TcpStream::from(fd), self.protocol, file_slot));
                self.settle(id);
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
                        self.accepting = Accepting::Paused;
                        let backoff = opcode::Timeout::new(&*self.backoff).build();
                        self.push(backoff, Op::Backoff);
                    }
                    Accepted::Closed => return Err(errno.into()),
                    Accepted::Conn(_) | Accepted::Again | Accepted::Empty => {}
                },
            }
        }
        self.arm_accept();
        Ok(())
    }

    /// A connection closed, or the back-off ended: accept again if accepting had paused.
    fn resume_accept(&mut self) {
        if self.accepting == Accepting::Paused {
            self.accepting = Accepting::Idle;
        }
        self.arm_accept();
    }

    fn on_recv(&mut self, id: ConnId, res: i32, flags: u32) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let more = cqueue::more(flags);
        match cqueue::buffer_select(flags) {
            Some(bid) => {
                let bytes = self.uring.bufs().get(bid, res.max(0) as usize);
                conn.received(bytes, more, self.limits, &mut self.clock);
                // The bytes are copied into the session's output or `pending`: the buffer goes
                // back to the pool at once.
                self.uring.bufs_mut().recycle(bid);
            }
            None => conn.received(&[], more, self.limits, &mut self.clock),
        }
        match res {
            0 => conn.peer_closed(),
            r if r > 0 => {
                if self.config.idle_timeout.is_some() {
                    conn.touch(self.clock.now());
                }
            }
            // The pool ran dry (the multishot receive ended) or we cancelled it: `settle`
            // re-arms it if it is still wanted.
            r if r == -libc::ENOBUFS || r == -libc::ECANCELED => {}
            r if r == -libc::EINVAL && self.recv_mode != RecvMode::Single => {
                let refused = self.recv_mode;
                self.recv_mode = refused.fallback().unwrap_or(RecvMode::Single);
                crate::event!(
                    "io_uring: receive mode {refused:?} refused (EINVAL; {} needs Linux {}); \
                     using {:?}",
                    match refused {
                        RecvMode::CappedMultishot => "a byte cap on a multishot receive",
                        _ => "a multishot receive",
                    },
                    match refused {
                        RecvMode::CappedMultishot => "6.17",
                        _ => "6.0",
                    },
                    self.recv_mode
                );
            }
            _ => conn.abort(),
        }
        self.settle(id);
    }

    fn on_send(&mut self, id: ConnId, res: i32) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.sent(res);
            if res > 0 && self.config.idle_timeout.is_some() {
                conn.touch(self.clock.now());
            }
        }
        self.settle(id);
    }

    /// Submits what connection `id` asks for after an event ([`RingConn::settle`]: its whole
    /// policy), or closes it when it is finished and nothing of it is in flight.
    fn settle(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.settle(
            self.uring.bufs(),
            self.limits,
            self.recv_mode,
            &mut self.clock,
        ) {
            Settle::Submit(ops) => {
                for op in ops.into_iter().flatten() {
                    match op {
                        ConnOp::Recv(entry) => self.push(entry, Op::Recv(id)),
                        ConnOp::Send(entry) => self.push(entry, Op::Send(id)),
                        ConnOp::Cancel(OpKind::Recv) => {
                            self.cancel(Op::Recv(id), Op::CancelConn(id))
                        }
                        ConnOp::Cancel(OpKind::Send) => {
                            self.cancel(Op::Send(id), Op::CancelConn(id))
                        }
                    }
                }
            }
            Settle::Close { orderly } => {
                if let Some(conn) = self.conns.remove(id) {
                    // The file table holds a reference to the socket: empty its slot first, or
                    // dropping the descriptor would not close the socket.
                    if let Some(slot) = conn.file_slot() {
                        self.uring.unregister_file(slot);
                    }
                    if orderly {
                        lingering_close(conn.stream());
                    }
                }
                if self.stopping && self.conns.is_empty() {
                    // The last one is closed: the shutdown need not wait for its deadline.
                    self.cancel(Op::StopDeadline, Op::CancelServer);
                }
                self.resume_accept();
            }
        }
    }

    fn arm_sweep(&mut self) {
        if self.stopping {
            return;
        }
        if let Some(period) = &self.sweep {
            let entry = opcode::Timeout::new(&**period).build();
            self.push(entry, Op::Sweep);
        }
    }

    /// Every sweep period: answer and close the request heads overdue, close the connections
    /// idle for longer than the timeout.
    fn on_sweep(&mut self) {
        let now = Instant::now();
        let (idle, header) = (self.config.idle_timeout, self.config.header_timeout);
        for id in self.conns.ids() {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            if header.is_some_and(|limit| conn.head_expired(limit, now)) {
                conn.head_timed_out();
            } else if idle.is_some_and(|limit| conn.idle_for(limit, now)) {
                conn.abort();
            } else {
                continue;
            }
            self.settle(id);
        }
        self.arm_sweep();
    }

    /// Shutdown: cancel the server's own operations; every connection stops receiving and
    /// closes with a FIN once its replies are sent. Those whose peer will not take them are
    /// aborted at [`STOP_DEADLINE`]; `run` reaps until nothing is in flight.
    fn stop(&mut self) {
        self.stopping = true;
        for target in [Op::Accept, Op::Sweep, Op::Backoff] {
            self.cancel(target, Op::CancelServer);
        }
        let ids = self.conns.ids();
        if !ids.is_empty() {
            crate::event!("shutdown: closing the {} open connection(s)", ids.len());
            let deadline = opcode::Timeout::new(&*self.stop_deadline).build();
            self.push(deadline, Op::StopDeadline);
        }
        for id in ids {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.stop_reading();
            }
            self.settle(id);
        }
    }

    /// The shutdown's deadline passed: abort every connection still flushing.
    fn abort_all(&mut self) {
        for id in self.conns.ids() {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.abort();
            }
            self.settle(id);
        }
    }
}
