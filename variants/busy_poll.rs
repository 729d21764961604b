//! `busy-poll` — one thread, every socket nonblocking, and no waiting at all: the loop asks
//! every socket in turn whether it has anything, forever.
//!
//! Syscalls, in order, every turn: `accept4` on the nonblocking listener until EAGAIN or
//! [`ACCEPT_BUDGET`] connections ([`EventLoop::accept`]); then, for every connection, one `read`
//! (EAGAIN when nothing came) and a `write` of anything pending ([`EventLoop::on_ready`] with
//! [`Ready::BOTH`]: "try both", since nobody said which is ready). Then again, at once. No `select`, no `poll`, no `epoll`: the kernel is never asked which sockets
//! are ready; each one is tried.
//!
//! It is correct — every byte is served, backpressure and the idle timeout work as in the other
//! models, and shutdown is seen within one turn because the loop checks the flag on every turn
//! instead of sleeping — and it shows what the readiness APIs are for. While idle it burns a
//! whole CPU: a turn with no connections is one failing `accept4`, so it makes hundreds of
//! thousands of system calls a second to learn that nothing happened (250 000 a second here,
//! 1.8 million with 1 000 idle connections: notes/busy-poll.md), and with N connections
//! each turn is N+1 failed calls or more. Latency is good while the loop has a core to itself
//! (nothing ever sleeps, so nothing has to be woken); on a shared core it takes time from
//! everything else, including the clients it serves. Compare with `select` and `poll`, which
//! hand the same walk to the kernel and sleep until something is ready, and with `epoll-lt`,
//! which does not walk at all.
//!
//! (Busy polling is a real technique where latency matters more than a core — DPDK's poll-mode
//! drivers never give theirs away, and the kernel's SO_BUSY_POLL spins on a device queue for a
//! bounded number of microseconds before sleeping, socket(7) — but here it is the cautionary
//! baseline.)
//!
//! The note, with the idle CPU measured: notes/busy-poll.md.

use std::io;

use crate::server::conn::Ready;
#[cfg(doc)]
use crate::server::event_loop::ACCEPT_BUDGET;
use crate::server::event_loop::{EventLoop, FdLimit};
use crate::server::model::{Model, ServeContext};

/// Serves every connection from one thread that never sleeps.
pub struct BusyPoll;

impl Model for BusyPoll {
    fn name(&self) -> &'static str {
        "busy-poll"
    }

    fn summary(&self) -> &'static str {
        "one thread, all nonblocking, retrying every socket on EAGAIN; burns a CPU while idle"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let mut event_loop = EventLoop::new(ctx, FdLimit::None)?;
        while !event_loop.shutdown_requested() {
            if event_loop.accepting() {
                event_loop.accept(|_, _| Ok(()))?;
            }
            // Every descriptor number a connection may have; the numbers of closed ones are
            // skipped (on_ready finds nothing there). Try a read, and write whatever is
            // pending: nothing was asked of the kernel, so there is nothing to tell it either.
            for fd in 0..event_loop.fd_bound() {
                event_loop.on_ready(fd, Ready::BOTH);
            }
            event_loop.sweep_timeouts(|_| {});
        }
        event_loop.close_all();
        Ok(())
    }
}
