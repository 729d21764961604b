//! `epoll-et` — one thread, one epoll instance, edge-triggered: each socket is registered once
//! for both directions, and the kernel reports a change, not a state.
//!
//! Syscalls, in order: `epoll_create1`; `epoll_ctl(ADD)` for the shutdown eventfd and, with
//! EPOLLET, the listener. Then the loop: `epoll_wait` returns the descriptors that became ready;
//! the listener's edge means `accept4` until EAGAIN, each new socket
//! `epoll_ctl(ADD, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)` — once, never MOD; a connection's
//! edge means `read` until EAGAIN (or a short read) and `write` until EAGAIN or nothing is
//! left. `close` removes a socket from the interest list.
//!
//! Edge-triggered (边沿触发) means a descriptor is reported when it *becomes* ready — a packet
//! arrived, buffer space freed — and not again until the next change. The rule that follows:
//! every report must be drained to EAGAIN, reads, writes and accepts alike; input left in the
//! socket after a report will never be reported again unless more arrives. In return, no
//! `epoll_ctl(MOD)` is ever needed (interest in writing is always on, and costs nothing while the
//! socket stays writable: no edge, no wake-up), and a socket is reported once per change rather
//! than on every turn it stays ready.
//!
//! Fairness: draining to EAGAIN lets one client that sends without pause hold the thread for as
//! long as it keeps the socket full. So draining has a per-turn budget: [`READ_BUDGET`] reads per
//! connection, [`ACCEPT_BUDGET`](crate::server::event_loop::ACCEPT_BUDGET) accepts for the listener. A
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
//! The note: notes/epoll-et.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::server::conn::Step;
use crate::server::event_loop::{AcceptEnd, EventLoop, millis};
use crate::server::model::{Model, ServeContext};

/// Readiness reports fetched per `epoll_wait`; more ready descriptors wait for the next call.
const MAX_EVENTS: usize = 256;

/// Reads per connection per turn (of `read_chunk` bytes each): enough to drain a socket's
/// receive buffer in one turn in the common case, few enough that a sender that never pauses
/// cannot hold the thread.
pub const READ_BUDGET: usize = 8;

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
        let mut lp = EventLoop::new(ctx, None)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let listener = lp.listener().as_raw_fd();
        let shutdown = lp.shutdown_fd().as_raw_fd();
        let conn_flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        // The eventfd stays level-triggered: once readable, it stays so until the process exits.
        epoll.add(
            lp.shutdown_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, shutdown as u64),
        )?;
        epoll.add(
            lp.listener(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, listener as u64),
        )?;
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
        // Connections with input left after their budget, served next turn without an edge.
        let mut ready: Vec<RawFd> = Vec::new();
        // The listener had an edge and has not been drained to EAGAIN since.
        let mut listener_ready = false;

        while !lp.shutdown_requested() {
            let owed = !ready.is_empty() || (listener_ready && lp.accepting());
            let timeout = if owed {
                PollTimeout::ZERO
            } else {
                millis(lp.timeout())
            };
            let n = match epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            // Last turn's leftovers are served after this turn's reports: the busy connection
            // waits its turn behind everyone else.
            let mut carried = std::mem::take(&mut ready);
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
                if flags.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
                    // The FIN may sit behind the bytes a short read returns: read on to it.
                    lp.saw_hangup(fd);
                }
                let readable = flags.intersects(
                    EpollFlags::EPOLLIN
                        | EpollFlags::EPOLLRDHUP
                        | EpollFlags::EPOLLHUP
                        | EpollFlags::EPOLLERR,
                );
                if lp.on_ready(
                    fd,
                    readable,
                    flags.contains(EpollFlags::EPOLLOUT),
                    READ_BUDGET,
                ) == Step::Budget
                {
                    ready.push(fd);
                }
            }
            for fd in carried {
                // A connection closed this turn answers Done; a number reused by a connection
                // accepted this turn costs one read that finds EAGAIN.
                if lp.on_ready(fd, true, false, READ_BUDGET) == Step::Budget {
                    ready.push(fd);
                }
            }
            if listener_ready && lp.accepting() {
                let end = lp.accept(|s| {
                    Ok(epoll.add(s, EpollEvent::new(conn_flags, s.as_raw_fd() as u64))?)
                })?;
                // Budget: more may wait, with no new edge to say so. Paused: out of descriptors,
                // try again when one is free.
                listener_ready = end != AcceptEnd::Drained;
            }
            lp.sweep_idle(|_| {});
        }
        lp.close_all();
        Ok(())
    }
}
