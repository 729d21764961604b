//! One connection's bytes: read, feed the protocol, write the reply — with backpressure.
//!
//! Two shapes of the same mechanics:
//! - [`serve_blocking`] for the blocking family: one thread (or process) per connection at a
//!   time, where a full socket buffer simply blocks `write`, and that is the backpressure.
//! - [`Conn`] for the event-driven family: a nonblocking state machine that says what it wants
//!   next (read, write, or both) so that select, poll and epoll loops differ only in how they
//!   wait. Pending output past [`Config::out_cap`] stops reading until the peer drains it, so no
//!   model buffers without bound for a peer that does not read.
//!
//! Memory: an idle connection owns no buffer. Bytes are read into a scratch buffer the loop
//! owns; a connection keeps bytes only while a request is incomplete or a reply is unsent.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::time::Instant;

use crate::model::Config;
use crate::net::{interrupted, would_block};
use crate::protocol::{AnySession, Protocol, Session};

/// A buffer kept between bursts is dropped when it has grown past this, so that a connection
/// that once carried a large message does not hold the memory while idle.
const KEEP_CAPACITY: usize = 4 * 1024;

/// How a blocking connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed (or half-closed) and every byte owed to it was written.
    PeerClosed,
    /// The protocol asked to close (`Connection: close`, a bad request).
    ProtocolClosed,
    /// No byte moved for the idle timeout (SO_RCVTIMEO or SO_SNDTIMEO fired).
    Idle,
}

/// Serves one connection on a blocking socket until the peer or the protocol closes it.
///
/// `read` blocks until bytes arrive; `write_all` blocks while the peer's window and our send
/// buffer are full. The idle timeout, if any, becomes SO_RCVTIMEO and SO_SNDTIMEO on the socket.
/// Errors (a reset peer) are returned for the caller to count; the socket is closed either way
/// when the caller drops it.
pub fn serve_blocking(
    stream: &TcpStream,
    protocol: Protocol,
    config: &Config,
    buf: &mut Vec<u8>,
) -> io::Result<End> {
    if config.idle_timeout.is_some() {
        stream.set_read_timeout(config.idle_timeout)?;
        stream.set_write_timeout(config.idle_timeout)?;
    }
    buf.resize(config.read_chunk.max(1), 0);
    let mut session = protocol.session();
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut stream = stream;
    let end = loop {
        let n = match stream.read(buf) {
            Ok(0) => break End::PeerClosed,
            Ok(n) => n,
            Err(e) if interrupted(&e) => continue,
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::TimedOut => break End::Idle,
            Err(e) => return Err(e),
        };
        let close = feed(&mut session, &mut pending, &buf[..n], &mut out);
        match stream.write_all(&out) {
            Ok(()) => {}
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::TimedOut => break End::Idle,
            Err(e) => return Err(e),
        }
        out.clear();
        if close {
            break End::ProtocolClosed;
        }
    };
    if end != End::Idle {
        lingering_close(stream);
    }
    Ok(end)
}

/// Feeds `input` to the session, keeping what it does not consume (an incomplete request) in
/// `pending` for next time. Returns whether the session asked to close.
fn feed(session: &mut AnySession, pending: &mut Vec<u8>, input: &[u8], out: &mut Vec<u8>) -> bool {
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
fn lingering_close(stream: &TcpStream) {
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

/// What a [`Conn`] wants the event loop to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Wake me when the socket is readable.
    pub read: bool,
    /// Wake me when the socket is writable (output is pending).
    pub write: bool,
}

/// Where a [`Conn`] stands after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Still open; wait for [`Conn::interest`].
    Open,
    /// Still open, but it stopped because of the per-turn budget with input perhaps left in
    /// the socket: an edge-triggered loop must come back to it without waiting for an event.
    Budget,
    /// Finished: close it.
    Done,
}

/// One nonblocking connection: its socket, its protocol session, and the bytes in flight.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    session: AnySession,
    /// Bytes read but not yet consumed by the session (an incomplete request).
    pending: Vec<u8>,
    /// Reply bytes not yet written; `out[sent..]` is what remains.
    out: Vec<u8>,
    sent: usize,
    /// The peer sent FIN, or the protocol asked to close: read no more.
    read_done: bool,
    /// When a byte last moved, for the idle timeout.
    last_active: Instant,
}

impl Conn {
    /// Wraps an accepted, nonblocking socket.
    pub fn new(stream: TcpStream, protocol: Protocol) -> Conn {
        Conn {
            stream,
            session: protocol.session(),
            pending: Vec::new(),
            out: Vec::new(),
            sent: 0,
            read_done: false,
            last_active: Instant::now(),
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

    /// Output written to the socket's buffer is not yet all gone.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.sent
    }

    /// What to wait for: readable while reading is allowed and output is under the cap,
    /// writable while output is pending.
    pub fn interest(&self, config: &Config) -> Interest {
        Interest {
            read: !self.read_done && self.pending_output() < config.out_cap,
            write: self.pending_output() > 0,
        }
    }

    /// Handles readability: reads up to `max_reads` times into `scratch` (stopping at EAGAIN,
    /// EOF or the output cap), feeds the protocol, and writes what it can of the replies.
    ///
    /// Level-triggered loops pass `max_reads = 1`: the kernel will say again if more is there.
    /// Edge-triggered loops pass a budget and get [`Step::Budget`] back if it ran out first.
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        config: &Config,
        max_reads: usize,
    ) -> io::Result<Step> {
        let mut reads = 0;
        let mut drained = false;
        while self.interest(config).read {
            if reads == max_reads {
                break;
            }
            reads += 1;
            match (&self.stream).read(scratch) {
                Ok(0) => {
                    self.read_done = true;
                    drained = true;
                }
                Ok(n) => {
                    self.last_active = Instant::now();
                    if feed(
                        &mut self.session,
                        &mut self.pending,
                        &scratch[..n],
                        &mut self.out,
                    ) {
                        self.read_done = true;
                    }
                    // A short read means the socket's queue is empty: no need to hear EAGAIN.
                    if n < scratch.len() {
                        drained = true;
                        break;
                    }
                }
                Err(e) if would_block(&e) => {
                    drained = true;
                    break;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        let step = self.on_writable()?;
        let over_cap = self.pending_output() >= config.out_cap;
        Ok(
            if step == Step::Open && !drained && !over_cap && !self.read_done && reads == max_reads
            {
                Step::Budget
            } else {
                step
            },
        )
    }

    /// Handles writability: writes pending output until done or EAGAIN.
    pub fn on_writable(&mut self) -> io::Result<Step> {
        while self.sent < self.out.len() {
            match (&self.stream).write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.last_active = Instant::now();
                }
                Err(e) if would_block(&e) => return Ok(Step::Open),
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        if self.read_done {
            lingering_close(&self.stream);
            return Ok(Step::Done);
        }
        Ok(Step::Open)
    }

    /// Whether the connection has been idle for longer than the configured timeout.
    pub fn idle_expired(&self, config: &Config, now: Instant) -> bool {
        config
            .idle_timeout
            .is_some_and(|t| now.saturating_duration_since(self.last_active) >= t)
    }
}
