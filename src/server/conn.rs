//! One connection's bytes: read, feed the protocol, write the reply — with backpressure.
//!
//! Two shapes of the same mechanics:
//! - [`serve_blocking`] for the blocking family: one thread (or process) per connection at a
//!   time, where a full socket buffer simply blocks `write`, and that is the backpressure.
//! - [`Conn`] for the readiness loops: a nonblocking state machine. The loop hands it what the
//!   kernel reported ([`Ready`]) and how many reads it may make ([`Reads`]); it reads, feeds the
//!   protocol, writes, and says what it wants next ([`Next`], and [`Conn::interest`]: read,
//!   write, or both), as Bendersky's `fd_status_t` does, so that select, poll and epoll loops
//!   differ only in how they wait. Pending output past [`Config::out_cap`] stops reading until
//!   the peer drains it, so no model buffers without bound for a peer that does not read.
//!
//! Memory: an idle connection owns no buffer. Bytes are read into a scratch buffer the loop
//! owns; a connection keeps bytes only while a request is incomplete or a reply is unsent.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::time::{Duration, Instant};

use crate::server::model::Config;
use crate::server::net::{interrupted, would_block};
use crate::server::protocol::{AnySession, Protocol, Session};

/// A buffer kept between bursts is dropped when it has grown past this, so that a connection
/// that once carried a large message does not hold the memory while idle.
pub const KEEP_CAPACITY: usize = 4 * 1024;

/// How a blocking connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed (or half-closed) and every byte owed to it was written.
    PeerClosed,
    /// The protocol asked to close (`Connection: close`, a bad request).
    ProtocolClosed,
    /// No byte moved for the idle timeout (SO_RCVTIMEO or SO_SNDTIMEO fired).
    Idle,
    /// A request head stayed incomplete past the header deadline: answered (408) and closed.
    HeadTimedOut,
}

/// Serves one connection on a blocking socket until the peer or the protocol closes it.
///
/// `read` blocks until bytes arrive; `write_all` blocks while the peer's window and our send
/// buffer are full. The idle timeout, if any, becomes SO_RCVTIMEO and SO_SNDTIMEO on the socket.
/// While a request head is incomplete, SO_RCVTIMEO is cut to what is left of the header
/// deadline ([`Config::header_timeout`]), so that a client sending its head a byte at a time
/// cannot hold the thread or process past it: a deadline for the head, not a timeout per read.
/// Errors (a reset peer) are returned for the caller to count; the socket is closed either way
/// when the caller drops it.
pub fn serve_blocking(
    stream: &TcpStream,
    protocol: Protocol,
    config: &Config,
    buf: &mut Vec<u8>,
) -> io::Result<End> {
    if config.idle_timeout.is_some() {
        stream.set_write_timeout(config.idle_timeout)?;
    }
    let mut read_timeout = ReadTimeout::new(stream, config.idle_timeout)?;
    buf.resize(config.read_chunk.max(1), 0);
    let mut session = protocol.session_for(config);
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    // When the incomplete request head in `pending` began.
    let mut head_since: Option<Instant> = None;
    let mut stream = stream;
    let end = loop {
        let head_left = head_since
            .zip(config.header_timeout)
            .map(|(since, limit)| (since + limit).saturating_duration_since(Instant::now()));
        if head_left == Some(Duration::ZERO) {
            break End::HeadTimedOut;
        }
        let idle_bounds_read = read_timeout.set(head_left)?;
        let n = match stream.read(buf) {
            Ok(0) => break End::PeerClosed,
            Ok(n) => n,
            Err(e) if interrupted(&e) => continue,
            Err(e) if timed_out(&e) && idle_bounds_read => break End::Idle,
            // The header deadline: checked at the top of the loop.
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        let close = feed(&mut session, &mut pending, &buf[..n], &mut out);
        match stream.write_all(&out) {
            Ok(()) => {}
            Err(e) if timed_out(&e) => break End::Idle,
            Err(e) => return Err(e),
        }
        out.clear();
        if close {
            break End::ProtocolClosed;
        }
        if config.header_timeout.is_some() {
            head_since = match (pending.is_empty(), head_since) {
                (true, _) => None,
                (false, None) => Some(Instant::now()),
                (false, since) => since,
            };
        }
    };
    if end == End::HeadTimedOut {
        session.head_timed_out(&mut out);
        // Best effort: a client this slow may not read either.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(&out);
    }
    if end != End::Idle {
        lingering_close(stream);
    }
    Ok(end)
}

/// Whether a blocking call gave up on SO_RCVTIMEO or SO_SNDTIMEO (EAGAIN, which std reports as
/// `WouldBlock`, or `TimedOut`).
fn timed_out(e: &io::Error) -> bool {
    would_block(e) || e.kind() == io::ErrorKind::TimedOut
}

/// A blocking socket's SO_RCVTIMEO: the idle timeout, cut shorter while a request head's
/// deadline is nearer. Set only when it changes, so that the common case — complete requests —
/// costs no `setsockopt` per read.
struct ReadTimeout<'a> {
    stream: &'a TcpStream,
    idle: Option<Duration>,
    current: Option<Duration>,
}

impl<'a> ReadTimeout<'a> {
    fn new(stream: &'a TcpStream, idle: Option<Duration>) -> io::Result<ReadTimeout<'a>> {
        if idle.is_some() {
            stream.set_read_timeout(idle)?;
        }
        Ok(ReadTimeout {
            stream,
            idle,
            current: idle,
        })
    }

    /// Makes the next read give up after the idle timeout or `head_left`, whichever is
    /// shorter (at least a millisecond: a zero SO_RCVTIMEO would mean "never"). Returns
    /// whether it is the idle timeout that bounds the read, so that a read that gives up means
    /// the connection is idle.
    fn set(&mut self, head_left: Option<Duration>) -> io::Result<bool> {
        let (wanted, idle_bounds) = match (self.idle, head_left) {
            (Some(idle), Some(head)) if head < idle => (Some(head), false),
            (Some(idle), _) => (Some(idle), true),
            (None, head) => (head, false),
        };
        let wanted = wanted.map(|t| t.max(Duration::from_millis(1)));
        if wanted != self.current {
            self.stream.set_read_timeout(wanted)?;
            self.current = wanted;
        }
        Ok(idle_bounds)
    }
}

/// Feeds `input` to the session, keeping what it does not consume (an incomplete request) in
/// `pending` for next time. Returns whether the session asked to close.
pub fn feed(
    session: &mut AnySession,
    pending: &mut Vec<u8>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let progress = if pending.is_empty() {
        let p = session.feed(input, out);
        pending.extend_from_slice(&input[p.consumed..]);
        p
    } else {
        pending.extend_from_slice(input);
        let p = session.feed(pending, out);
        pending.drain(..p.consumed);
        p
    };
    if pending.is_empty() && pending.capacity() > KEEP_CAPACITY {
        *pending = Vec::new();
    }
    progress.close
}

/// Closes our side after everything owed was written: FIN first (shutdown), then a short,
/// nonblocking drain of what the peer already sent. Closing a socket whose receive queue holds
/// unread bytes sends RST instead of FIN, and an RST can destroy the reply (a `400`) in the
/// peer's receive queue before it is read.
pub fn lingering_close(stream: &TcpStream) {
    let _ = stream.shutdown(Direction::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        let mut reader = stream;
        for _ in 0..16 {
            match reader.read(&mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// What a [`Conn`] wants the event loop to wait for: Bendersky's `fd_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Wake me when the socket is readable.
    pub read: bool,
    /// Wake me when the socket is writable (output is pending).
    pub write: bool,
}

impl Interest {
    /// Readable only: what a new connection waits for.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
}

/// What the kernel reported about a socket, in the loop's own terms: each loop turns its
/// API's flags (EPOLLIN, POLLOUT, a bit in an fd_set) into this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Read now: bytes, the end of the stream, or an error are waiting.
    pub readable: bool,
    /// Write now: the send buffer has room.
    pub writable: bool,
    /// The peer's FIN has arrived (EPOLLRDHUP). Only an edge-triggered loop needs this: a
    /// short read no longer means the queue is empty, because the end of the stream waits
    /// behind the bytes and raises no new edge.
    pub peer_closed: bool,
}

impl Ready {
    /// Try both directions, asking the kernel nothing (busy polling).
    pub const BOTH: Ready = Ready {
        readable: true,
        writable: true,
        peer_closed: false,
    };
    /// Try reading: input is known to be left over from an earlier turn.
    pub const READABLE: Ready = Ready {
        readable: true,
        writable: false,
        peer_closed: false,
    };
}

/// How many reads one step may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// One read: a level-triggered kernel reports the socket again if more is there.
    Once,
    /// Read until EAGAIN, but at most this many times, so that a sender that never pauses
    /// cannot hold the thread: an edge-triggered kernel reports no input twice.
    Drain {
        /// Reads allowed in this step.
        budget: usize,
    },
}

impl Reads {
    fn limit(self) -> usize {
        match self {
            Reads::Once => 1,
            Reads::Drain { budget } => budget.max(1),
        }
    }
}

/// What a [`Conn`] wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait until the kernel reports the socket ready for [`Conn::interest`].
    Wait,
    /// Serve it again without waiting: it may hold input this step was not allowed to read
    /// (the read budget ran out, or output just fell back under the cap after reading had
    /// stopped). Only an edge-triggered loop must act on it: no new edge will announce that
    /// input, where a level-triggered kernel simply reports the socket again.
    ReadAgain,
    /// Finished, and closed with a FIN: drop it.
    Close,
}

/// The buffers an event loop owns once and lends to every connection it serves: one read's
/// worth of input and the replies made from it. A connection copies bytes into buffers of its
/// own only when a request is incomplete or the socket would not take the whole reply, so an
/// idle connection owns no heap memory at all.
#[derive(Debug)]
pub struct Scratch {
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Scratch {
    /// Buffers for reads of [`Config::read_chunk`] bytes.
    pub fn new(config: &Config) -> Scratch {
        Scratch {
            input: vec![0; config.read_chunk.max(1)],
            output: Vec::new(),
        }
    }
}

/// One nonblocking connection: its socket, its protocol session, and the bytes in flight.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    session: AnySession,
    /// Bytes read but not yet consumed by the session (an incomplete request).
    pending: Vec<u8>,
    /// Reply bytes the socket did not take; `out[sent..]` is what remains.
    out: Vec<u8>,
    sent: usize,
    /// The peer sent FIN, or the protocol asked to close: read no more.
    read_done: bool,
    /// The socket may hold input not read yet: set by a readiness report, cleared by a read that
    /// comes back short, empty (EOF) or with EAGAIN.
    unread: bool,
    /// The peer's FIN has arrived ([`Ready::peer_closed`]): read on past a short read.
    hangup: bool,
    /// When a byte last moved, for the idle timeout; stamped by the loop (see [`Conn::take_moved`]).
    last_active: Instant,
    /// A byte moved since the loop last asked.
    moved: bool,
}

impl Conn {
    /// Wraps an accepted, nonblocking socket and the session it speaks.
    pub fn new(stream: TcpStream, session: AnySession) -> Conn {
        Conn {
            stream,
            session,
            pending: Vec::new(),
            out: Vec::new(),
            sent: 0,
            read_done: false,
            unread: false,
            hangup: false,
            last_active: Instant::now(),
            moved: false,
        }
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// When a byte last moved.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Whether a byte moved since the last call (which clears the mark). The loop, not the
    /// connection, reads the clock: once per readiness report rather than once per read and per
    /// write, and not at all when no idle timeout is configured — a clock read is a sizeable
    /// share of the work a request costs in user space.
    pub fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// Records that a byte moved at `now`.
    pub fn set_last_active(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// Reply bytes the socket has not taken yet.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.sent
    }

    /// What to wait for: readable while reading is allowed and output is under the cap,
    /// writable while output is pending.
    pub fn interest(&self, config: &Config) -> Interest {
        Interest {
            read: self.may_read(config),
            write: self.pending_output() > 0,
        }
    }

    fn may_read(&self, config: &Config) -> bool {
        !self.read_done && self.pending_output() < config.out_cap
    }

    /// One step after a readiness report: if `ready.readable`, reads (as often as `reads`
    /// allows, stopping at EAGAIN, a short read, EOF or the output cap), feeds the protocol and
    /// writes the replies; then, or if only `ready.writable`, writes queued output until it is
    /// gone or the socket is full (EAGAIN). Says what the connection wants next; an error (a
    /// reset peer) is the caller's to close on.
    pub fn step(
        &mut self,
        ready: Ready,
        reads: Reads,
        scratch: &mut Scratch,
        config: &Config,
    ) -> io::Result<Next> {
        if ready.peer_closed {
            self.hangup = true;
        }
        if ready.readable {
            self.unread = true;
            let mut budget = reads.limit();
            while budget > 0 && self.unread && self.may_read(config) {
                budget -= 1;
                self.read_once(scratch)?;
            }
        }
        if ready.readable || ready.writable {
            self.flush()?;
        }
        Ok(if self.pending_output() == 0 && self.read_done {
            lingering_close(&self.stream);
            Next::Close
        } else if self.unread && self.may_read(config) {
            Next::ReadAgain
        } else {
            Next::Wait
        })
    }

    /// One `read` into the scratch buffer, fed to the session, the replies written.
    fn read_once(&mut self, scratch: &mut Scratch) -> io::Result<()> {
        match (&self.stream).read(&mut scratch.input) {
            Ok(0) => {
                self.read_done = true;
                self.unread = false;
            }
            Ok(n) => {
                self.moved = true;
                // A short read means the socket's queue is empty: no need to hear EAGAIN.
                // (New bytes arriving after it raise a new edge, so edge-triggered loops may
                // rely on this too; epoll(7) says as much for stream sockets.) Unless the FIN
                // has arrived: then the end of the stream is still to be read.
                self.unread = n == scratch.input.len() || self.hangup;
                if feed(
                    &mut self.session,
                    &mut self.pending,
                    &scratch.input[..n],
                    &mut scratch.output,
                ) {
                    self.read_done = true;
                }
                if self.pending.is_empty() {
                    self.pending = Vec::new();
                }
                self.reply(&mut scratch.output)?;
            }
            Err(e) if would_block(&e) => self.unread = false,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Sends a reply the session just made: straight from the scratch buffer when nothing is
    /// queued before it, so that the common case copies nothing and allocates nothing; whatever
    /// the socket does not take is kept, in order, behind what is already queued.
    #[inline]
    fn reply(&mut self, output: &mut Vec<u8>) -> io::Result<()> {
        let sent = if self.out.is_empty() {
            write_some(&self.stream, output)
        } else {
            Ok(0)
        };
        if let Ok(written) = sent {
            if written > 0 {
                self.moved = true;
            }
            self.out.extend_from_slice(&output[written..]);
        }
        // Emptied even when the write failed: the scratch buffer serves the next connection.
        output.clear();
        sent.map(drop)
    }

    /// Writes queued output until it is all gone or the socket is full (EAGAIN).
    fn flush(&mut self) -> io::Result<()> {
        if self.sent < self.out.len() {
            let written = write_some(&self.stream, &self.out[self.sent..])?;
            if written > 0 {
                self.sent += written;
                self.moved = true;
            }
            if self.sent == self.out.len() {
                // Drained: give the buffer back, so that an idle connection holds no memory.
                self.out = Vec::new();
                self.sent = 0;
            }
        }
        Ok(())
    }

    /// Whether it holds the start of a request whose head is not complete yet (bytes the
    /// session could not consume). Echo consumes every byte, so only HTTP ever does.
    pub fn partial_request(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The header deadline passed with the request head still incomplete: writes the
    /// protocol's answer (HTTP's 408) as far as the socket takes it, and closes with a FIN.
    /// Answered and closed at once, whatever the socket took: a client that sends a head this
    /// slowly may not read either.
    pub fn head_timed_out(&mut self, scratch: &mut Scratch) {
        self.session.head_timed_out(&mut scratch.output);
        self.read_done = true;
        if self.reply(&mut scratch.output).is_ok() {
            let _ = self.flush();
        }
        lingering_close(&self.stream);
    }

    /// Closes it on shutdown: the output it holds is written as far as the socket takes it
    /// without blocking, then a FIN (see [`lingering_close`]).
    pub fn close_now(mut self) {
        let _ = self.flush();
        lingering_close(&self.stream);
    }
}

/// Writes as much of `bytes` as the socket takes without blocking; returns how much that was.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected pair on loopback: (the server's side wrapped in a `Conn`, the peer), once
    /// every byte of `peer_writes` has reached the server's receive queue.
    fn pair(peer_writes: &[u8]) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let mut peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        peer.write_all(peer_writes).expect("peer write");
        // Wait until every byte is queued on our side, so that what the reads see is certain.
        ours.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut probe = vec![0; peer_writes.len() + 1];
        while ours.peek(&mut probe).expect("peek") < peer_writes.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        ours.set_nonblocking(true).expect("nonblocking");
        (Conn::new(ours, Protocol::Echo.session()), peer)
    }

    fn config(read_chunk: usize, out_cap: usize) -> Config {
        Config {
            read_chunk,
            out_cap,
            ..Config::default()
        }
    }

    const DRAIN_2: Reads = Reads::Drain { budget: 2 };
    const DRAIN_8: Reads = Reads::Drain { budget: 8 };

    /// An edge-triggered loop's contract: when the read budget runs out with input left, the
    /// connection says `ReadAgain`; once a read comes back short, it says `Wait`.
    #[test]
    fn read_again_while_input_is_left() {
        let config = config(1024, 1 << 20);
        let input: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let (mut conn, mut peer) = pair(&input);
        let mut scratch = Scratch::new(&config);
        assert_eq!(
            conn.step(Ready::READABLE, DRAIN_2, &mut scratch, &config)
                .expect("read"),
            Next::ReadAgain
        );
        assert_eq!(
            conn.step(Ready::READABLE, DRAIN_8, &mut scratch, &config)
                .expect("read"),
            Next::Wait
        );
        let mut back = vec![0; input.len()];
        peer.read_exact(&mut back).expect("echo");
        assert_eq!(back, input);
        assert_eq!(conn.pending_output(), 0);
    }

    /// Backpressure: over the output cap, reading stops (interest turns to write only); when a
    /// write brings the output back under the cap with input still unread, the connection says
    /// `ReadAgain`, because an edge-triggered loop will get no new edge for that input.
    #[test]
    fn reading_resumes_after_backpressure() {
        let config = config(1024, 2048);
        let input = vec![7u8; 8192];
        let (mut conn, mut peer) = pair(&input);
        let mut scratch = Scratch::new(&config);
        // Output over the cap, queued by hand as if the socket had refused a reply.
        conn.out.extend_from_slice(&[1u8; 4096]);
        assert_eq!(
            conn.interest(&config),
            Interest {
                read: false,
                write: true
            }
        );
        // A readiness report while over the cap reads nothing, sends the queued output, and
        // reports that input is waiting.
        assert_eq!(
            conn.step(Ready::READABLE, Reads::Once, &mut scratch, &config)
                .expect("write"),
            Next::ReadAgain
        );
        assert_eq!(conn.pending_output(), 0);
        assert!(conn.interest(&config).read);
        // Served again, it reads and echoes everything.
        while conn
            .step(Ready::READABLE, DRAIN_8, &mut scratch, &config)
            .expect("read")
            == Next::ReadAgain
        {}
        let mut back = vec![0; 4096 + input.len()];
        peer.read_exact(&mut back).expect("echo");
        assert_eq!(&back[4096..], &input[..]);
    }

    /// An idle connection owns no heap memory: the buffers it used are given back.
    #[test]
    fn idle_connection_holds_no_buffer() {
        let config = config(1024, 1 << 20);
        let (mut conn, mut peer) = pair(&[5u8; 3000]);
        let mut scratch = Scratch::new(&config);
        while conn
            .step(Ready::READABLE, DRAIN_8, &mut scratch, &config)
            .expect("read")
            == Next::ReadAgain
        {}
        let mut back = [0u8; 3000];
        peer.read_exact(&mut back).expect("echo");
        assert_eq!((conn.pending.capacity(), conn.out.capacity()), (0, 0));
    }

    /// A peer's FIN after a request: the reply is sent, then the connection is done.
    #[test]
    fn done_after_peer_half_closes() {
        let config = config(1024, 1 << 20);
        let (mut conn, mut peer) = pair(b"bye");
        peer.shutdown(Direction::Write).expect("half-close");
        let mut scratch = Scratch::new(&config);
        let mut next = Next::ReadAgain;
        for _ in 0..400 {
            next = conn
                .step(Ready::READABLE, DRAIN_8, &mut scratch, &config)
                .expect("read");
            if next == Next::Close {
                break;
            }
            std::thread::sleep(Duration::from_millis(5)); // the FIN may trail the bytes
        }
        assert_eq!(next, Next::Close);
        let mut back = Vec::new();
        peer.read_to_end(&mut back).expect("read to EOF");
        assert_eq!(back, b"bye");
    }
}
