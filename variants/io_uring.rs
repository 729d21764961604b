//! `io-uring` — completion-based: the program does not ask "is this socket ready?" but submits
//! the operations themselves (accept, receive, send) to a ring shared with the kernel, and reaps
//! their results from a second ring. One thread, one ring.
//!
//! Syscalls, in order: `io_uring_setup` (with SINGLE_ISSUER and DEFER_TASKRUN: completions are
//! processed only when this thread asks), `io_uring_register` of a ring of provided buffers
//! ([`crate::uring::BufRing`]); then one loop around `io_uring_enter` (`submit_and_wait`), which
//! submits everything queued since the last turn and sleeps until at least one completion.
//! There are no `accept4`, `recv` or `send` calls: those are operations in the ring —
//! - one *multishot* accept on the listener: submitted once, it completes once per connection;
//! - one multishot receive per connection, taking buffers from the shared pool: an idle
//!   connection holds no buffer, and a completion says which buffer holds its bytes;
//! - a send per reply batch, from a buffer the connection owns until the send completes;
//! - a poll on the shutdown eventfd, and a timeout for the idle sweep — operations like the rest.
//!
//! The bytes are the same as every model's: completions feed the same sans-IO session through
//! [`conn::feed`]. Backpressure: while a connection's unsent output is past `Config::out_cap`,
//! its receive is cancelled and not re-armed until the peer drains it. Out of descriptors, the
//! accept completes with EMFILE and ends; it is re-armed when a connection closes (or after a
//! back-off), never at once — an accept re-armed at once would fail again, a spin.
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

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use nix::libc;

use crate::conn::{self, lingering_close};
use crate::model::{Config, Model, ServeContext};
use crate::net::{self, Accepted};
use crate::protocol::{AnySession, Protocol};
use crate::uring::BufRing;

/// The shared receive pool: buffers × size.
const BUFFERS: u16 = 1024;
const BUF_SIZE: usize = 4096;
/// Submission queue entries; the completion queue is bigger, since one multishot operation can
/// complete many times per turn.
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 16 * 1024;
/// A reply buffer kept between bursts is dropped past this size (as in `conn`).
const KEEP_CAPACITY: usize = 4 * 1024;

/// What an operation was, kept in the high half of its `user_data`; the low half is the
/// connection's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Recv,
    Send,
    /// A cancellation aimed at one connection's operation: the slot stays taken until it ends.
    Cancel,
    Shutdown,
    Sweep,
    Backoff,
    /// A cancellation of a server-wide operation (at shutdown).
    Other,
}

const OPS: [Op; 8] = [
    Op::Accept,
    Op::Recv,
    Op::Send,
    Op::Cancel,
    Op::Shutdown,
    Op::Sweep,
    Op::Backoff,
    Op::Other,
];

fn token(op: Op, slot: usize) -> u64 {
    (op as u64) << 32 | slot as u64
}

fn untoken(user_data: u64) -> (Option<Op>, usize) {
    let op = OPS.iter().copied().find(|&op| op as u64 == user_data >> 32);
    (op, (user_data & 0xffff_ffff) as usize)
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
        let ring = match IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
        {
            Ok(ring) => ring,
            Err(e) => {
                crate::event!(
                    "io_uring: SINGLE_ISSUER/DEFER_TASKRUN refused ({e}; Linux < 6.1?); using a plain ring"
                );
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)?
            }
        };
        let bufs = BufRing::new(BUFFERS, BUF_SIZE, 0)?;
        bufs.register(&ring.submitter()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring buffer ring refused ({e}): this model needs Linux 5.19 or later"),
            )
        })?;
        crate::event!(
            "io_uring: {BUFFERS} provided buffers of {BUF_SIZE} bytes; multishot accept and recv"
        );
        let sweep = ctx
            .config
            .idle_timeout
            .map(|t| timespec((t / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))));
        let mut server = Server {
            ring,
            bufs,
            inflight: 0,
            conns: Vec::new(),
            free: Vec::new(),
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
        };
        let stop = opcode::PollAdd::new(
            types::Fd(ctx.shutdown.fd().as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build();
        server.push(stop.user_data(token(Op::Shutdown, 0)));
        server.arm_accept();
        server.arm_sweep();
        server.run()
    }
}

/// A cancellation of `conn`'s operation `op`, counted on the connection so that its slot is not
/// reused (and the cancellation cannot hit the next connection's operation) until it completes.
fn cancel_for(conn: &mut Conn, op: Op, slot: usize) -> squeue::Entry {
    conn.cancels += 1;
    opcode::AsyncCancel::new(token(op, slot))
        .build()
        .user_data(token(Op::Cancel, slot))
}

fn timespec(d: Duration) -> Box<types::Timespec> {
    Box::new(types::Timespec::from(d))
}

/// One connection: its socket, its session, and its bytes in flight.
struct Conn {
    stream: TcpStream,
    session: AnySession,
    /// Bytes received but not yet consumed by the session (an incomplete request).
    pending: Vec<u8>,
    /// Replies not yet handed to a send.
    out: Vec<u8>,
    /// The bytes of the send in flight: the kernel reads them until it completes, so this
    /// buffer is never touched meanwhile. `sending[sent..]` is what is left to send.
    sending: Vec<u8>,
    sent: usize,
    recv_armed: bool,
    send_armed: bool,
    /// Cancellations in flight aimed at this connection's operations.
    cancels: u8,
    /// The peer sent FIN or the protocol asked to close: receive no more, flush, close.
    read_done: bool,
    /// A reset, the idle timeout or server shutdown: close without flushing.
    abort: bool,
    last_active: Instant,
}

impl Conn {
    /// Reply bytes not yet sent.
    fn backlog(&self) -> usize {
        self.out.len() + self.sending.len() - self.sent
    }

    fn busy(&self) -> bool {
        self.recv_armed || self.send_armed || self.cancels > 0
    }
}

/// The loop's state. Field order matters: the ring is dropped (and with it every operation)
/// before the buffers those operations name.
struct Server {
    ring: IoUring,
    bufs: BufRing,
    /// Operations submitted whose final completion has not been reaped.
    inflight: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
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
}

impl Server {
    /// Reaps completions and submits what they call for, until shutdown has closed everything.
    fn run(&mut self) -> io::Result<()> {
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(CQ_ENTRIES as usize);
        while !(self.stopping && self.inflight == 0) {
            // One syscall: submit every queued operation, then sleep until one completes.
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // A signal (EINTR), or completions overflowed the queue (EBUSY): reap and go on.
                Err(e)
                    if matches!(
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        Errno::EINTR | Errno::EBUSY
                    ) => {}
                Err(e) => return Err(e),
            }
            done.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for (user_data, res, flags) in done.drain(..) {
                if !cqueue::more(flags) {
                    self.inflight -= 1;
                }
                let (op, slot) = untoken(user_data);
                match op {
                    Some(Op::Accept) => self.on_accept(res, flags)?,
                    Some(Op::Recv) => self.on_recv(slot, res, flags),
                    Some(Op::Send) => self.on_send(slot, res),
                    Some(Op::Cancel) => {
                        if let Some(conn) = self.conns[slot].as_mut() {
                            conn.cancels -= 1;
                        }
                        self.settle(slot);
                    }
                    Some(Op::Shutdown) => self.stop(),
                    Some(Op::Sweep) => self.on_sweep(),
                    Some(Op::Backoff) => self.resume_accept(),
                    Some(Op::Other) | None => {}
                }
            }
        }
        Ok(())
    }

    /// Queues one operation, submitting the queue first if it is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry names outlives its operation: the send buffer is
            // left alone until the send completes (`Conn::sending`), receive buffers belong to
            // the buffer ring, which outlives the ring, and timespecs are boxed in `self`.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.inflight += 1;
                return;
            }
            // Full: hand the queue to the kernel now. An error here resurfaces at the next
            // submit_and_wait; the entry waits for room either way.
            let _ = self.ring.submit();
        }
    }

    fn cancel(&mut self, target: u64, as_op: Op, slot: usize) {
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
        self.push(entry.user_data(token(Op::Accept, 0)));
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
                let slot = self.insert(TcpStream::from(fd));
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
                        self.push(backoff.user_data(token(Op::Backoff, 0)));
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

    fn insert(&mut self, stream: TcpStream) -> usize {
        let conn = Conn {
            stream,
            session: self.protocol.session(),
            pending: Vec::new(),
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            recv_armed: false,
            send_armed: false,
            cancels: 0,
            read_done: false,
            abort: false,
            last_active: Instant::now(),
        };
        match self.free.pop() {
            Some(slot) => {
                self.conns[slot] = Some(conn);
                slot
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        }
    }

    fn on_recv(&mut self, slot: usize, res: i32, flags: u32) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if !cqueue::more(flags) {
            conn.recv_armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && !conn.read_done && !conn.abort {
                conn.last_active = Instant::now();
                let bytes = self.bufs.get(bid, res as usize);
                conn.read_done =
                    conn::feed(&mut conn.session, &mut conn.pending, bytes, &mut conn.out);
            }
            // The bytes are copied into the session's output or `pending`: the buffer goes back.
            self.bufs.recycle(bid);
        }
        match res {
            0 => conn.read_done = true,
            r if r > 0 => {}
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
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        conn.send_armed = false;
        if res < 0 {
            conn.abort = true;
        } else {
            conn.last_active = Instant::now();
            conn.sent += res as usize;
            if conn.sent == conn.sending.len() {
                conn.sending.clear();
                conn.sent = 0;
                if conn.sending.capacity() > KEEP_CAPACITY {
                    conn.sending = Vec::new();
                }
            }
        }
        self.settle(slot);
    }

    /// Brings a connection's operations in line with its state: send what is owed, receive
    /// while under the output cap, cancel what is no longer wanted, close once nothing is in
    /// flight. Called after every event that touches the connection.
    fn settle(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let fd = types::Fd(conn.stream.as_raw_fd());
        let mut queue: [Option<squeue::Entry>; 2] = [None, None];
        if conn.abort || (conn.read_done && conn.backlog() == 0) {
            // Finished: stop whatever is still in flight; close when the last one ends.
            if conn.cancels == 0 {
                if conn.recv_armed {
                    queue[0] = Some(cancel_for(conn, Op::Recv, slot));
                }
                if conn.abort && conn.send_armed {
                    queue[1] = Some(cancel_for(conn, Op::Send, slot));
                }
            }
            if !conn.busy() {
                if let Some(conn) = self.conns[slot].take() {
                    if !conn.abort {
                        lingering_close(&conn.stream);
                    }
                }
                self.free.push(slot);
                self.resume_accept();
                return;
            }
        } else {
            if !conn.send_armed && conn.sending.is_empty() && !conn.out.is_empty() {
                std::mem::swap(&mut conn.out, &mut conn.sending);
            }
            if !conn.send_armed && conn.sent < conn.sending.len() {
                let rest = &conn.sending[conn.sent..];
                // MSG_NOSIGNAL: a peer that reset gets an EPIPE completion, not a SIGPIPE.
                let send = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL);
                queue[1] = Some(send.build().user_data(token(Op::Send, slot)));
                conn.send_armed = true;
            }
            let over_cap = conn.backlog() >= self.config.out_cap;
            if conn.cancels == 0 && !conn.recv_armed && !conn.read_done && !over_cap {
                let recv = if self.multishot_recv {
                    opcode::RecvMulti::new(fd, self.bufs.group()).build()
                } else {
                    opcode::Recv::new(fd, std::ptr::null_mut(), self.bufs.buf_size() as u32)
                        .buf_group(self.bufs.group())
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT)
                };
                queue[0] = Some(recv.user_data(token(Op::Recv, slot)));
                conn.recv_armed = true;
            } else if conn.cancels == 0 && conn.recv_armed && over_cap {
                // Backpressure: the peer is not reading its replies, so stop receiving.
                queue[0] = Some(cancel_for(conn, Op::Recv, slot));
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
                .user_data(token(Op::Sweep, 0));
            self.push(entry);
        }
    }

    /// Every sweep period: close the connections idle for longer than the timeout.
    fn on_sweep(&mut self) {
        let (now, limit) = (Instant::now(), self.config.idle_timeout);
        for slot in 0..self.conns.len() {
            let Some(conn) = self.conns[slot].as_mut() else {
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
        for op in [Op::Accept, Op::Sweep, Op::Backoff] {
            self.cancel(token(op, 0), Op::Other, 0);
        }
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.abort = true;
                self.settle(slot);
            }
        }
    }
}
