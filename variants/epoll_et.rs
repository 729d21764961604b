//! `epoll-et` — one thread, one epoll instance, edge-triggered: each socket is registered once
//! for both directions, and the kernel reports a change, not a state.
//!
//! Syscalls, in order: `epoll_create1`; `epoll_ctl(ADD)` for the shutdown eventfd and, with
//! EPOLLET, the listener. Then the loop:
//! - `epoll_wait` returns the descriptors that became ready (timeout: the next idle deadline,
//!   or 0 while some socket still owes work from an earlier turn);
//! - a connection's edge: `read` until EAGAIN, a short read or [`READ_BUDGET`] reads, then
//!   `write` until EAGAIN or nothing is left ([`EventLoop::drain`]);
//! - the listener's edge: `accept4` until EAGAIN or [`ACCEPT_BUDGET`] connections
//!   ([`EventLoop::accept`]), each new socket `epoll_ctl(ADD, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
//!   EPOLLET)` — once, never MOD;
//! - `close` of a finished connection removes it from the interest list.
//!
//! Edge-triggered (边缘触发) means a descriptor is reported when it *becomes* ready — a packet
//! arrived, buffer space freed — and not again until the next change. The rule that follows:
//! every report must be drained to EAGAIN, reads, writes and accepts alike; input left in the
//! socket after a report will never be reported again unless more arrives. In return, no
//! `epoll_ctl(MOD)` is ever needed (interest in writing is always on, and costs nothing while the
//! socket stays writable: no edge, no wake-up), and a socket is reported once per change rather
//! than on every turn it stays ready.
//!
//! Fairness: draining to EAGAIN lets one client that sends without pause hold the thread for as
//! long as it keeps the socket full. So draining has a per-turn budget: [`READ_BUDGET`] reads per
//! connection, [`ACCEPT_BUDGET`] accepts for the listener. A
//! connection (or the listener) that uses up its budget has input left that no edge will
//! announce, so it goes on a ready list that is served next turn, after the new reports, and
//! while that list is not empty `epoll_wait` is called with timeout 0: it polls for new edges
//! without sleeping. The same list takes a connection whose output just dropped back under the
//! cap while input still waits in its socket (reading had stopped for backpressure).
//!
//! Cost: the fewest `epoll_wait` reports per byte of any model, and no `epoll_ctl` after ADD.
//! Where it breaks: forgetting to drain is a hang, not an error — the bug this model teaches;
//! one thread is still one core. Compare with `epoll-lt` (one read per report, MOD on change).
//!
//! EPOLLRDHUP is what only this model needs: when the peer's FIN arrives right behind its last
//! bytes, a read comes back short with the end of the stream still queued, and no new edge will
//! come for it; the flag tells the loop to read on until `read` returns 0.
//!
//! The note: notes/epoll-et.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::server::conn::Ready;
#[cfg(doc)]
use crate::server::event_loop::ACCEPT_BUDGET;
use crate::server::event_loop::{AcceptEnd, Drained, EventLoop, FdLimit, ReadBudget, poll_timeout};
use crate::server::model::{Model, ServeContext};

/// Readiness reports fetched per `epoll_wait`; more ready descriptors wait for the next call.
const MAX_EVENTS: usize = 256;

/// Reads per connection per turn (of `read_chunk` bytes each): enough to drain a socket's
/// receive buffer in one turn in the common case, few enough that a sender that never pauses
/// cannot hold the thread.
pub const READ_BUDGET: ReadBudget = ReadBudget(8);

/// A connection's registration: both directions and the peer's FIN, edge-triggered, once.
const CONN_EVENTS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

/// Serves every connection from one thread on an edge-triggered epoll instance.
pub struct EpollEt;

impl Model for EpollEt {
    fn name(&self) -> &'static str {
        "epoll-et"
    }

    fn summary(&self) -> &'static str {
        "one thread, epoll edge-triggered; drain to EAGAIN with a per-turn budget"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let mut event_loop = EventLoop::new(ctx, FdLimit::None)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let shutdown = event_loop.shutdown_fd().as_raw_fd();
        let listener = event_loop.listener().as_raw_fd();
        // The eventfd stays level-triggered: once readable, it stays so until the process exits.
        epoll.add(
            event_loop.shutdown_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, shutdown as u64),
        )?;
        epoll.add(
            event_loop.listener(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, listener as u64),
        )?;
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
        // Connections with input left after their budget, served next turn without an edge.
        let mut input_left: Vec<RawFd> = Vec::new();
        // The listener had an edge and has not been drained to EAGAIN since.
        let mut listener_ready = false;

        while !event_loop.shutdown_requested() {
            let owed = !input_left.is_empty() || (listener_ready && event_loop.accepting());
            let timeout = if owed {
                PollTimeout::ZERO
            } else {
                poll_timeout(event_loop.timeout())
            };
            let n = match epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            // Last turn's leftovers are served after this turn's reports: the busy connection
            // waits its turn behind everyone else.
            let mut carried = std::mem::take(&mut input_left);
            carried.sort_unstable();
            carried.dedup();
            for ev in &events[..n] {
                let fd = ev.data() as RawFd;
                if fd == shutdown {
                    continue; // the loop's condition sees it
                }
                if fd == listener {
                    listener_ready = true;
                    continue;
                }
                let flags = ev.events();
                let hangup = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP;
                let ready = Ready {
                    readable: flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | hangup),
                    writable: flags.contains(EpollFlags::EPOLLOUT),
                    // The FIN may sit behind the bytes a short read returns: read on to it.
                    peer_closed: flags.intersects(hangup),
                };
                match event_loop.drain(fd, ready, READ_BUDGET) {
                    Drained::InputLeft => input_left.push(fd),
                    Drained::Empty | Drained::Closed => {}
                }
            }
            for fd in carried {
                // A connection closed this turn answers Closed; a number reused by a connection
                // accepted this turn costs one read that finds EAGAIN.
                match event_loop.drain(fd, Ready::READABLE, READ_BUDGET) {
                    Drained::InputLeft => input_left.push(fd),
                    Drained::Empty | Drained::Closed => {}
                }
            }
            if listener_ready && event_loop.accepting() {
                // Every connection is registered once for everything it will ever wait for.
                let end = event_loop.accept(|socket, _| {
                    let data = socket.as_raw_fd() as u64;
                    Ok(epoll.add(socket, EpollEvent::new(CONN_EVENTS, data))?)
                })?;
                listener_ready = match end {
                    AcceptEnd::Drained => false,
                    // Budget: more may wait, with no new edge to say so. Paused: out of
                    // descriptors; try again when one is free.
                    AcceptEnd::Budget | AcceptEnd::Paused => true,
                };
            }
            event_loop.sweep_timeouts(|_| {});
        }
        event_loop.close_all();
        Ok(())
    }
}
