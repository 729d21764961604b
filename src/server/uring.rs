//! What a completion-based (io_uring) model needs beyond the `io-uring` crate: a ring of
//! provided buffers, shared by every connection of one ring.
//!
//! With readiness (epoll) the program picks the buffer when it calls `read`. With completions it
//! must name the buffer when it *submits* the receive, long before any byte arrives — one buffer
//! per waiting connection, 10 000 idle connections, 10 000 idle buffers. Provided buffers (Linux
//! 5.7) turn that around: the program hands the kernel a pool (here the ring-mapped kind, a
//! "buffer ring", Linux 5.19), every receive says "take one from group G", and the completion
//! says which buffer (its id) holds the bytes.
//! The program reads them and gives the buffer back by writing its entry at the ring's tail.
//! Memory is then one pool per ring, whatever the number of connections.
//!
//! [`Uring`] wraps the instance, its buffer ring and the count of operations in flight: the part
//! of a completion loop that does not depend on what the operations are for. [`RingConn`] is
//! one connection's bytes in flight when the kernel, not the program, moves them, and the policy
//! of its operations; [`RingConns`] is the table of them, by [`ConnId`].

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::server::conn::{self, KEEP_CAPACITY};
use crate::server::net;
use crate::server::protocol::{AnySession, Session};
use io_uring::types::BufRingEntry;
use io_uring::{IoUring, Submitter, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// The registered file table's size at most: one slot per connection.
const MAX_FIXED_FILES: u64 = 1 << 16;

/// A ring of `count` provided buffers of `size` bytes each, registered as one buffer group.
///
/// One anonymous mapping holds both: the ring of entries the kernel reads buffer addresses from
/// (page-aligned, as the kernel requires), then the buffers. The program touches a buffer only
/// through a raw pointer, and only while the kernel does not own it.
#[derive(Debug)]
pub struct BufRing {
    /// The start of the mapping: `count` ring entries.
    entries: NonNull<BufRingEntry>,
    /// The first buffer, page-aligned, after the entries.
    buffers: NonNull<u8>,
    mapped: usize,
    count: u16,
    size: usize,
    /// Our copy of the ring's tail: how many buffers were ever given to the kernel.
    tail: u16,
    group: u16,
}

impl BufRing {
    /// Maps a ring of `count` buffers (a power of two, at most 32 768) of `size` bytes each, every
    /// buffer already in the ring. Pages cost memory only once the kernel first writes them.
    pub fn new(count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: bad count or size",
            ));
        }
        let page = 4096;
        let ring_bytes = (usize::from(count) * size_of::<BufRingEntry>()).next_multiple_of(page);
        let mapped = ring_bytes + usize::from(count) * size;
        let len = NonZeroUsize::new(mapped).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh, zero-filled anonymous mapping aliases nothing and is page-aligned.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        // SAFETY: `ring_bytes` < `mapped`, so the buffers start inside the mapping.
        let buffers = unsafe { base.cast::<u8>().add(ring_bytes) };
        let mut ring = BufRing {
            entries: base.cast(),
            buffers,
            mapped,
            count,
            size,
            tail: 0,
            group,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        Ok(ring)
    }

    /// Registers the ring with an io_uring instance (Linux 5.19 or later).
    pub fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the entries stay mapped until `self` is dropped, and the owner drops the
        // io_uring instance before this buffer ring (see the field order of [`Uring`]), so the
        // kernel never reads an unmapped entry.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count,
                self.group,
                0,
            )
        }
    }

    /// The buffer group id to put in receive operations.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    fn buffer(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid % count < count, so the offset stays inside the mapping.
        unsafe {
            self.buffers
                .as_ptr()
                .add(usize::from(bid % self.count) * self.size)
        }
    }

    /// The first `len` bytes of buffer `bid`, which a completion has just handed back to us.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: the buffer is inside the mapping, and the kernel, having completed into it,
        // does not write it again until it is recycled (which needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.buffer(bid), len.min(self.size)) }
    }

    /// Gives buffer `bid` back to the kernel: its entry is written at the tail, then the tail is
    /// published with release ordering, so the kernel never sees the tail before the entry.
    pub fn recycle(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` < count, inside the mapping; the kernel reads only entries below the
        // tail, and this one is at the tail, not yet published.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid % self.count);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a u16 inside the first entry, aligned, and shared with the kernel
        // only through atomic accesses.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length, and nothing uses it any more.
        unsafe {
            let _ = munmap(self.entries.cast(), self.mapped);
        }
    }
}

/// An io_uring instance, its provided buffers, its table of registered files, and how many
/// operations are in flight.
pub struct Uring {
    // Field order matters: the instance is dropped (and with it every operation) before the
    // buffers those operations name.
    ring: IoUring,
    bufs: BufRing,
    inflight: usize,
    /// Operations queued while the submission queue was full and the kernel took none of it:
    /// they go in first at the next turn, in order.
    waiting: VecDeque<squeue::Entry>,
    /// Slots in the registered file table; 0 when the kernel refused one.
    fixed_files: u32,
}

impl Uring {
    /// Sets up an instance with `sq` submission and `cq` completion entries and a registered
    /// ring of `buffers` buffers of `buf_size` bytes (buffer group 0).
    ///
    /// It asks for SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1): completions are then processed
    /// only when this thread enters the kernel, not by interrupting it. Refused, it says so
    /// and uses a plain instance. Buffer rings need Linux 5.19; refused, it fails, saying so.
    pub fn new(sq: u32, cq: u32, buffers: u16, buf_size: usize) -> io::Result<Uring> {
        let builder = || {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq);
            b
        };
        let ring = match builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq)
        {
            Ok(ring) => ring,
            Err(e) => {
                crate::event!(
                    "io_uring: SINGLE_ISSUER/DEFER_TASKRUN refused ({e}); using a plain ring"
                );
                builder().build(sq)?
            }
        };
        let bufs = BufRing::new(buffers, buf_size, 0)?;
        bufs.register(&ring.submitter()).map_err(|e| {
            let why = format!(
                "io_uring buffer ring refused ({e}): provided buffer rings need Linux 5.19 or later"
            );
            io::Error::new(e.kind(), why)
        })?;
        // A registered (fixed) file lets an operation name the socket by its slot in this table:
        // the kernel then skips looking the descriptor up and counting a reference to its file
        // (fget/fput, two atomic operations) on every operation. Sparse: slots fill as
        // connections arrive. Its size is bounded by RLIMIT_NOFILE, as the kernel requires.
        let fixed_files =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(0, |(soft, _)| soft.min(MAX_FIXED_FILES) as u32);
        let fixed_files = match ring.submitter().register_files_sparse(fixed_files) {
            Ok(()) => fixed_files,
            Err(e) => {
                crate::event!("io_uring: no registered file table ({e}); plain descriptors");
                0
            }
        };
        Ok(Uring {
            ring,
            bufs,
            inflight: 0,
            waiting: VecDeque::new(),
            fixed_files,
        })
    }

    /// Registers `fd` in slot `slot` of the file table, so that operations can name it as
    /// `types::Fixed(slot)`. Returns the slot, or `None` (use the plain descriptor) when the table
    /// is too small or the kernel refuses. One `io_uring_register` per connection.
    pub fn register_file(&mut self, slot: u32, fd: RawFd) -> Option<u32> {
        let slot = Some(slot).filter(|&s| s < self.fixed_files)?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Some(slot),
            _ => None,
        }
    }

    /// Empties slot `slot` of the file table. The table holds its own reference to the socket,
    /// so this must come before `close`, or closing the descriptor would not close the socket.
    pub fn unregister_file(&mut self, slot: u32) {
        // A failure leaves the socket open until the ring is dropped; it cannot be retried
        // usefully, so it is only logged.
        if let Err(e) = self.ring.submitter().register_files_update(slot, &[-1]) {
            crate::event!("io_uring: unregistering file slot {slot} failed ({e})");
        }
    }

    /// Queues one operation. When the submission queue is full it is handed to the kernel
    /// once (`io_uring_enter`); if the kernel takes none of it (it refuses submissions, or
    /// completions overflowed), the operation waits in a queue of our own for the next turn.
    /// Never more than one extra syscall, never a spin: the refusal itself shows at the next
    /// [`Uring::turn`].
    ///
    /// # Safety
    /// Every buffer the entry names must stay valid, and unmoved, until the operation's final
    /// completion has been reaped.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) {
        self.inflight += 1;
        if self.waiting.is_empty() {
            // SAFETY: upheld by the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
            // SAFETY: upheld by the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
        }
        self.waiting.push_back(entry.clone());
    }

    /// Operations waiting for room in the submission queue (see [`Uring::push`]).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// One turn of the loop, one syscall: submits every queued operation, sleeps until at least
    /// one completes, and moves every completion into `done`. An error is the kernel refusing
    /// the ring (anything but EINTR, or EBUSY: completions overflowed, which reaping cures).
    pub fn turn(&mut self, done: &mut Vec<cqueue::Entry>) -> io::Result<()> {
        while let Some(entry) = self.waiting.front() {
            // SAFETY: every entry in `waiting` came through `push`, whose caller keeps what it
            // names valid until its completion.
            if unsafe { self.ring.submission().push(entry) }.is_err() {
                break;
            }
            self.waiting.pop_front();
        }
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
        let before = done.len();
        done.extend(self.ring.completion());
        // A multishot operation stays in flight until a completion without the MORE flag.
        self.inflight -= done[before..]
            .iter()
            .filter(|c| !cqueue::more(c.flags()))
            .count();
        Ok(())
    }

    /// Operations submitted whose final completion has not been reaped.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// The provided buffers.
    pub fn bufs(&self) -> &BufRing {
        &self.bufs
    }

    /// The provided buffers, to recycle one.
    pub fn bufs_mut(&mut self) -> &mut BufRing {
        &mut self.bufs
    }
}

/// The clock as a loop turn needs it: read at most once per turn, and only if something asks —
/// at a request rate of ~100 000/s a clock read per event is a visible share of the work.
#[derive(Debug, Default)]
pub struct TurnClock(Option<Instant>);

impl TurnClock {
    /// The time, read now if it was not read yet this turn.
    pub fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }

    /// A new turn: the next [`TurnClock::now`] reads the clock again.
    pub fn next_turn(&mut self) {
        self.0 = None;
    }
}

/// What a connection's policy reads of the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Unsent output past which the connection is not read ([`Config::out_cap`]).
    ///
    /// [`Config::out_cap`]: crate::server::model::Config::out_cap
    pub out_cap: usize,
    /// Whether incomplete request heads are timed (a header deadline is configured).
    pub time_heads: bool,
}

/// The number a connection goes by in its ring: the index of its place in [`RingConns`],
/// carried in the `user_data` of its operations so that a completion finds it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub u32);

/// How a ring's connections receive: the best this kernel takes, from the first down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvMode {
    /// A multishot receive capped at the room left under the output cap (the byte count in
    /// `sqe->optlen`; the kernel stops and ends the receive once that many bytes arrived —
    /// Linux 6.17, "io_uring/net: Support multishot receive len cap"). A peer that never reads
    /// is held to the cap plus one buffer: the kernel delivers nothing past it.
    CappedMultishot,
    /// A multishot receive without a cap (Linux 6.0). Cancelled when the output passes the cap,
    /// but the completions already under way arrive all the same (as much as the socket held);
    /// they are held unfed, and the connection falls back to single receives.
    Multishot,
    /// One receive at a time, each armed only under the cap.
    Single,
}

impl RecvMode {
    /// The next mode down, for a kernel that refused this one (EINVAL).
    pub fn fallback(self) -> Option<RecvMode> {
        match self {
            RecvMode::CappedMultishot => Some(RecvMode::Multishot),
            RecvMode::Multishot => Some(RecvMode::Single),
            RecvMode::Single => None,
        }
    }
}

/// Caps a multishot receive at `bytes` bytes in all (`sqe->optlen`; see
/// [`RecvMode::CappedMultishot`]), which the `io-uring` crate does not expose.
fn with_byte_cap(entry: squeue::Entry, bytes: u32) -> squeue::Entry {
    /// Where `optlen` sits in the kernel's 64-byte `struct io_uring_sqe`
    /// (include/uapi/linux/io_uring.h): after opcode, flags, ioprio, fd, off, addr, len,
    /// the op flags, user_data, buf_index and personality.
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is a `#[repr(C)]` wrapper of the kernel's `io_uring_sqe`, 64 bytes
    // (the size equality is checked by `transmute` at compile time), and every bit pattern is a
    // valid value of it: it is plain data, read only by the kernel.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[OPTLEN..OPTLEN + 4].copy_from_slice(&bytes.to_ne_bytes());
    // SAFETY: as above, back again.
    unsafe { std::mem::transmute(raw) }
}

/// One of a connection's operations, as a cancellation names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Its (multishot) receive.
    Recv,
    /// Its send.
    Send,
}

/// One operation a connection asks the loop to submit; the loop tags it with the connection's
/// [`ConnId`] and submits it.
#[derive(Debug)]
pub enum ConnOp {
    /// Arm a receive (the entry is built; the loop sets its `user_data`).
    Recv(squeue::Entry),
    /// Send the next batch of replies.
    Send(squeue::Entry),
    /// Cancel the operation of this kind in flight.
    Cancel(OpKind),
}

/// What [`RingConn::settle`] asks of the loop.
#[derive(Debug)]
pub enum Settle {
    /// Submit these operations (at most one receive-side and one send-side).
    Submit([Option<ConnOp>; 2]),
    /// Finished, nothing in flight: take it out of the table and close it — with a FIN
    /// (`lingering_close`) after an orderly end, abruptly after an abort.
    Close {
        /// Every reply was sent: close with a FIN.
        orderly: bool,
    },
}

/// One connection of a completion-based loop: its socket, its session, its bytes in flight,
/// and which of its operations are in flight. The loop tells it what completed
/// ([`received`](RingConn::received), [`sent`](RingConn::sent), ...), and asks it what to submit
/// next ([`settle`](RingConn::settle)): the connection's whole policy — when to re-arm, cancel
/// and close — is there.
///
/// The reply buffer is double: a send in flight owns `sending` — the kernel reads it until the
/// send completes, so it must neither move nor change — while new replies gather in `out`.
#[derive(Debug)]
pub struct RingConn {
    stream: TcpStream,
    session: AnySession,
    /// Bytes received but not yet consumed by the session (an incomplete request).
    pending: Vec<u8>,
    /// Replies not yet handed to a send.
    out: Vec<u8>,
    /// The bytes of the send in flight; `sending[sent..]` is what is left to send.
    sending: Vec<u8>,
    sent: usize,
    /// Bytes received while the output was over the cap, not yet fed to the session: the
    /// completions of a multishot receive that were already on their way when it was
    /// cancelled. Fed a read's worth at a time as the output drains.
    held: Vec<u8>,
    /// Whether this connection may use a multishot receive. Cleared for good the first time its
    /// output passes the cap: a peer that sends faster than it reads gets one receive at a
    /// time from then on, each armed only while the output is under the cap, so that its
    /// buffered bytes stay within the cap plus one read.
    multishot: bool,
    /// When the incomplete request head in `pending` began, if one is incomplete.
    head_since: Option<Instant>,
    /// A receive is in flight.
    recv_armed: bool,
    /// A send is in flight.
    send_armed: bool,
    /// Cancellations in flight aimed at this connection's operations: while any is, its place
    /// is not reused, so a cancellation can never hit the next connection's operation.
    cancels: u8,
    /// The peer sent FIN or the protocol asked to close: receive no more, flush, close.
    read_done: bool,
    /// A reset, the idle timeout or server shutdown: close without flushing.
    abort: bool,
    /// When a byte last moved, for the idle timeout (stamped by the loop, once per turn).
    last_active: Instant,
    /// The socket's slot in the ring's registered file table, if it has one.
    file_slot: Option<u32>,
}

impl RingConn {
    /// A connection just accepted, nothing in flight, named by `file_slot` in the registered
    /// file table if it has one there.
    pub fn new(stream: TcpStream, session: AnySession, file_slot: Option<u32>) -> RingConn {
        RingConn {
            stream,
            session,
            pending: Vec::new(),
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            held: Vec::new(),
            multishot: true,
            head_since: None,
            recv_armed: false,
            send_armed: false,
            cancels: 0,
            read_done: false,
            abort: false,
            last_active: Instant::now(),
            file_slot,
        }
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket's slot in the registered file table, if it has one.
    pub fn file_slot(&self) -> Option<u32> {
        self.file_slot
    }

    /// A receive completed: `bytes` (possibly none) arrived, and `armed` says whether the
    /// receive is still in flight (a multishot receive with the MORE flag). Over the output
    /// cap, the bytes are held, not fed.
    pub fn received(&mut self, bytes: &[u8], armed: bool, limits: Limits, clock: &mut TurnClock) {
        self.recv_armed = armed;
        if bytes.is_empty() || self.read_done || self.abort {
            return;
        }
        if self.backlog() >= limits.out_cap || !self.held.is_empty() {
            self.multishot = false;
            self.held.extend_from_slice(bytes);
        } else {
            self.feed(bytes, limits, clock);
        }
    }

    fn feed(&mut self, bytes: &[u8], limits: Limits, clock: &mut TurnClock) {
        self.read_done = conn::feed(&mut self.session, &mut self.pending, bytes, &mut self.out);
        // The header deadline runs from the first byte of an incomplete head.
        self.head_since = match (self.pending.is_empty(), self.head_since) {
            (true, _) => None,
            (false, None) if limits.time_heads => Some(clock.now()),
            (false, since) => since,
        };
    }

    /// Feeds held bytes while the output is under the cap, one read's worth (`chunk`) at a
    /// time, so that the output grows by at most that much past the cap.
    fn feed_held(&mut self, limits: Limits, chunk: usize, clock: &mut TurnClock) {
        while !self.held.is_empty() && !self.read_done && self.backlog() < limits.out_cap {
            let n = self.held.len().min(chunk.max(1));
            let bytes: Vec<u8> = self.held.drain(..n).collect();
            self.feed(&bytes, limits, clock);
        }
        if self.held.is_empty() && self.held.capacity() > KEEP_CAPACITY {
            self.held = Vec::new();
        }
    }

    /// Whether its request head has been incomplete for `limit` or longer at `now`.
    pub fn head_expired(&self, limit: Duration, now: Instant) -> bool {
        self.head_since
            .is_some_and(|since| now.saturating_duration_since(since) >= limit)
    }

    /// The request head's deadline passed: the protocol's answer (HTTP's 408) is queued, and
    /// the connection closes once it is sent.
    pub fn head_timed_out(&mut self) {
        self.session.head_timed_out(&mut self.out);
        self.read_done = true;
        self.held.clear();
    }

    /// Server shutdown: receive no more; the connection closes with a FIN once every reply is
    /// sent (or is aborted if the peer will not take them, see the model's stop deadline).
    pub fn stop_reading(&mut self) {
        self.read_done = true;
        self.held.clear();
    }

    /// The peer's FIN arrived (a receive completed with 0 bytes).
    pub fn peer_closed(&mut self) {
        self.read_done = true;
    }

    /// Closes it without flushing: a reset, the idle timeout, server shutdown.
    pub fn abort(&mut self) {
        self.abort = true;
    }

    /// A send completed with `res` (bytes sent, or a negative errno, which aborts).
    pub fn sent(&mut self, res: i32) {
        self.send_armed = false;
        let Ok(n) = usize::try_from(res) else {
            self.abort = true;
            return;
        };
        self.sent += n;
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            if self.sending.capacity() > KEEP_CAPACITY {
                self.sending = Vec::new();
            }
        }
    }

    /// A cancellation aimed at one of its operations completed.
    pub fn cancelled(&mut self) {
        self.cancels = self.cancels.saturating_sub(1);
    }

    /// Records that a byte moved at `now`.
    pub fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// Whether it has been idle for `limit` or longer at `now`: no byte moved, and none can move
    /// now (see [`net::bytes_can_move`]).
    pub fn idle_for(&self, limit: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.last_active) >= limit
            && self.held.is_empty()
            && !net::bytes_can_move(self.stream.as_fd(), self.backlog() > 0)
    }

    /// Reply bytes not yet sent.
    fn backlog(&self) -> usize {
        self.out.len() + self.sending.len() - self.sent
    }

    /// Whether any operation of this connection is still in flight.
    fn busy(&self) -> bool {
        self.recv_armed || self.send_armed || self.cancels > 0
    }

    /// Whether it is finished: aborted, or done reading with every reply sent.
    fn finished(&self) -> bool {
        self.abort || (self.read_done && self.backlog() == 0)
    }

    /// The connection's policy, applied after every event that touches it: send what is owed;
    /// receive while under `out_cap` of unsent output, and cancel the receive when over it
    /// (backpressure: the peer is not reading its replies); once finished, cancel whatever is
    /// still in flight, and close when the last operation has ended. The operations it returns
    /// are counted as in flight: the caller must submit every one.
    pub fn settle(
        &mut self,
        bufs: &BufRing,
        limits: Limits,
        mode: RecvMode,
        clock: &mut TurnClock,
    ) -> Settle {
        let out_cap = limits.out_cap;
        self.feed_held(limits, bufs.buf_size(), clock);
        let mut ops: [Option<ConnOp>; 2] = [None, None];
        if self.finished() {
            if !self.busy() {
                return Settle::Close {
                    orderly: !self.abort,
                };
            }
            if self.cancels == 0 {
                if self.recv_armed {
                    ops[0] = Some(self.cancel(OpKind::Recv));
                }
                if self.abort && self.send_armed {
                    ops[1] = Some(self.cancel(OpKind::Send));
                }
            }
            return Settle::Submit(ops);
        }
        ops[1] = self.send_op().map(ConnOp::Send);
        let over_cap = self.backlog() >= out_cap || !self.held.is_empty();
        if self.cancels == 0 && !self.recv_armed && !self.read_done && !over_cap {
            let mode = match mode {
                RecvMode::Multishot if !self.multishot => RecvMode::Single,
                mode => mode,
            };
            let room = out_cap - self.backlog();
            ops[0] = Some(ConnOp::Recv(self.recv_op(bufs, mode, room)));
        } else if self.cancels == 0 && self.recv_armed && over_cap {
            ops[0] = Some(self.cancel(OpKind::Recv));
        }
        Settle::Submit(ops)
    }

    fn cancel(&mut self, kind: OpKind) -> ConnOp {
        self.cancels += 1;
        ConnOp::Cancel(kind)
    }

    /// The next send, if no send is in flight and replies are owed, naming the socket by its
    /// registered slot when it has one; marks the send in flight. Its bytes stay where they are,
    /// unchanged, until [`RingConn::sent`].
    fn send_op(&mut self) -> Option<squeue::Entry> {
        if self.send_armed {
            return None;
        }
        if self.sending.is_empty() {
            std::mem::swap(&mut self.out, &mut self.sending);
        }
        let rest = &self.sending[self.sent..];
        if rest.is_empty() {
            return None;
        }
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        let send = match self.file_slot {
            Some(slot) => opcode::Send::new(types::Fixed(slot), ptr, len),
            None => opcode::Send::new(types::Fd(self.stream.as_raw_fd()), ptr, len),
        };
        self.send_armed = true;
        // MSG_NOSIGNAL: after a peer's reset (reported first as ECONNRESET), a send fails with
        // EPIPE, and sk_stream_error() raises SIGPIPE with it unless the flag is set.
        Some(send.flags(nix::libc::MSG_NOSIGNAL).build())
    }

    /// A receive taking its buffers from `bufs`, as `mode` says: multishot (it stays armed,
    /// completing once per burst of bytes), capped at `room` bytes or not, or a single one;
    /// marks the receive in flight.
    fn recv_op(&mut self, bufs: &BufRing, mode: RecvMode, room: usize) -> squeue::Entry {
        let (fd, group, size) = (
            self.stream.as_raw_fd(),
            bufs.group(),
            bufs.buf_size() as u32,
        );
        let single = |recv: opcode::Recv| {
            let recv = recv.buf_group(group).build();
            recv.flags(squeue::Flags::BUFFER_SELECT)
        };
        self.recv_armed = true;
        let multi = match self.file_slot {
            Some(slot) => opcode::RecvMulti::new(types::Fixed(slot), group),
            None => opcode::RecvMulti::new(types::Fd(fd), group),
        };
        match mode {
            RecvMode::CappedMultishot => with_byte_cap(
                multi.build(),
                u32::try_from(room.max(1)).unwrap_or(u32::MAX),
            ),
            RecvMode::Multishot => multi.build(),
            RecvMode::Single => match self.file_slot {
                Some(slot) => single(opcode::Recv::new(types::Fixed(slot), null_mut(), size)),
                None => single(opcode::Recv::new(types::Fd(fd), null_mut(), size)),
            },
        }
    }
}

/// The connections of one ring, by [`ConnId`]. An id is reused only once its connection is
/// removed, which the loop does when none of its operations is left in flight — so a late
/// completion never reaches the next connection.
#[derive(Debug, Default)]
pub struct RingConns {
    conns: Vec<Option<RingConn>>,
    free: Vec<ConnId>,
    len: usize,
}

impl RingConns {
    /// The id the next inserted connection will get.
    pub fn next_id(&self) -> ConnId {
        self.free
            .last()
            .copied()
            .unwrap_or(ConnId(self.conns.len() as u32))
    }

    /// Puts `conn` in a free place and returns its id.
    pub fn insert(&mut self, conn: RingConn) -> ConnId {
        self.len += 1;
        match self.free.pop() {
            Some(id) => {
                self.conns[id.0 as usize] = Some(conn);
                id
            }
            None => {
                self.conns.push(Some(conn));
                ConnId(self.conns.len() as u32 - 1)
            }
        }
    }

    /// The connection `id`, if it is open.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut RingConn> {
        self.conns.get_mut(id.0 as usize)?.as_mut()
    }

    /// Takes connection `id` out and frees its id.
    pub fn remove(&mut self, id: ConnId) -> Option<RingConn> {
        let conn = self.conns.get_mut(id.0 as usize)?.take();
        if conn.is_some() {
            self.free.push(id);
            self.len -= 1;
        }
        conn
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids of every open connection.
    pub fn ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| ConnId(i as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::Protocol;
    use std::net::TcpListener;

    /// When the kernel refuses every submission (a ring set up disabled: io_uring_enter fails
    /// with EBADFD until it is enabled), pushing more operations than the submission queue
    /// holds neither spins nor loses any: the surplus waits, and the next turn reports the
    /// refusal instead of hanging.
    #[test]
    fn refused_submissions_wait_and_are_reported() {
        let ring = match IoUring::builder().setup_r_disabled().build(4) {
            Ok(ring) => ring,
            Err(e) => {
                eprintln!("skipped: this kernel gives no io_uring here ({e})");
                return;
            }
        };
        let mut uring = Uring {
            ring,
            bufs: BufRing::new(2, 64, 0).expect("buffer ring"),
            inflight: 0,
            waiting: VecDeque::new(),
            fixed_files: 0,
        };
        let nop = opcode::Nop::new().build();
        for _ in 0..10 {
            // SAFETY: a NOP names no buffer.
            unsafe { uring.push(&nop) };
        }
        assert_eq!(uring.inflight(), 10);
        assert_eq!(uring.waiting(), 10 - 4, "the queue holds 4; the rest wait");
        let mut done = Vec::new();
        let err = uring
            .turn(&mut done)
            .expect_err("a disabled ring refuses submissions");
        assert_eq!(err.raw_os_error(), Some(nix::libc::EBADFD), "{err}");
        assert!(done.is_empty());
    }

    /// An id is reused only once its connection is removed, and a second remove does not free
    /// it twice (two connections would then share it).
    #[test]
    fn ids_are_reused_only_once_free() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let conn = || {
            RingConn::new(
                TcpStream::connect(addr).expect("connect"),
                Protocol::Echo.session(),
                None,
            )
        };
        let mut conns = RingConns::default();
        let (a, b) = (conns.insert(conn()), conns.insert(conn()));
        assert_ne!(a, b);
        assert!(conns.remove(a).is_some());
        assert!(conns.remove(a).is_none());
        assert!(conns.get_mut(a).is_none());
        assert!(conns.get_mut(b).is_some());
        assert_eq!(conns.next_id(), a);
        assert_eq!(conns.insert(conn()), a);
        let c = conns.insert(conn());
        assert!(c != a && c != b);
        assert_eq!(conns.ids(), vec![a, b, c]);
    }
}
