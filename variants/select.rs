//! `select` — one thread, two bitmaps of descriptors rebuilt every turn: the oldest way (4.2BSD,
//! 1983) to wait for many sockets at once.
//!
//! Syscalls, in order: the loop fills a read set (the shutdown eventfd, the listener, every
//! connection that may read) and a write set (every connection with output pending), and calls
//! `select` (timeout: the next idle deadline). It returns the sets rewritten to hold only the
//! ready descriptors — which is why they are rebuilt before every call. Then, for each ready
//! connection, one `read` (then `write` of the reply) or a `write` of pending output
//! ([`EventLoop::on_ready`]); for the listener, `accept4` until EAGAIN or [`ACCEPT_BUDGET`]
//! connections ([`EventLoop::accept`]); `close` of each finished connection.
//!
//! FD_SETSIZE: an `fd_set` is a fixed bitmap of 1024 bits, so `select` cannot watch descriptor
//! 1024 or above — `FD_SET` past it is undefined behaviour in C (a write beyond the bitmap, or
//! an abort under `_FORTIFY_SOURCE`), and nix's `FdSet::insert` panics. The descriptor number is what counts, not how many are watched: a process holding
//! stdio, the eventfd, the listener and 1 019 connections has no number below 1024 left (every
//! other descriptor it holds takes one too). So a connection whose descriptor is 1024 or
//! more is closed as soon as it is accepted, with one log line per episode
//! ([`Model::fd_limit`]); the server goes on serving the others, and accepts again once one of
//! them closes and frees a low number. (The limit is glibc's, fixed at 1024 in its headers and
//! its `_FORTIFY_SOURCE` checks; the kernel has none, select(2) BUGS. The real fix is `poll`.)
//!
//! Cost: each turn builds two bitmaps and walks every connection to do so; the kernel copies in
//! and back out `nfds` bits of each, rounded up to 8-byte words (8 bytes while every descriptor
//! is below 64, 128 only near 1023: `core_sys_select` in fs/select.c), scans the bits up to the
//! highest descriptor, polls each socket whose bit is set and, until one is ready, registers on
//! its wait queue (`do_select`); the loop then tests every connection's bit again. O(watched)
//! three times per turn, however few are ready. Compare with `poll` (no ceiling, the same walk)
//! and `epoll-lt` (O(ready)).
//!
//! The note: notes/select.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::select::{FD_SETSIZE, FdSet, select};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::server::conn::Ready;
#[cfg(doc)]
use crate::server::event_loop::ACCEPT_BUDGET;
use crate::server::event_loop::{EventLoop, FdLimit};
use crate::server::model::{Model, ServeContext};

/// Serves every connection from one thread, waiting in select(2).
pub struct Select;

impl Model for Select {
    fn name(&self) -> &'static str {
        "select"
    }

    fn summary(&self) -> &'static str {
        "one thread, fd_sets rebuilt every turn; descriptors past FD_SETSIZE (1024) refused"
    }

    fn fd_limit(&self) -> Option<usize> {
        Some(FD_SETSIZE)
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        let mut event_loop = EventLoop::new(ctx, FdLimit::Below(FD_SETSIZE))?;
        for fd in [
            event_loop.listener().as_raw_fd(),
            event_loop.shutdown_fd().as_raw_fd(),
        ] {
            if fd as usize >= FD_SETSIZE {
                return Err(io::Error::other(format!(
                    "descriptor {fd} is past FD_SETSIZE ({FD_SETSIZE}): select cannot watch it"
                )));
            }
        }
        // Each connection select found ready, with what it was found ready for.
        let mut ready: Vec<(RawFd, Ready)> = Vec::new();

        while !event_loop.shutdown_requested() {
            let listener_ready = {
                // The sets borrow the sockets they name, so they live only in this block, and
                // the table cannot change while they exist.
                let mut reads = FdSet::new();
                let mut writes = FdSet::new();
                reads.insert(event_loop.shutdown_fd());
                // Out of descriptors, a readable listener would end every select at once.
                if event_loop.accepting() {
                    reads.insert(event_loop.listener());
                }
                for (socket, interest) in event_loop.interests() {
                    if interest.read {
                        reads.insert(socket);
                    }
                    if interest.write {
                        writes.insert(socket);
                    }
                }
                let mut timeout = event_loop.timeout().map(timeval);
                match select(None, &mut reads, &mut writes, None, timeout.as_mut()) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                if reads.contains(event_loop.shutdown_fd()) {
                    break;
                }
                // select rewrote the sets: only the ready descriptors are still in them.
                ready.clear();
                for (socket, _) in event_loop.interests() {
                    let found = Ready {
                        readable: reads.contains(socket),
                        writable: writes.contains(socket),
                        peer_closed: false,
                    };
                    if found.readable || found.writable {
                        ready.push((socket.as_raw_fd(), found));
                    }
                }
                reads.contains(event_loop.listener())
            };
            for &(fd, found) in &ready {
                // One read per report, level-triggered. What the connection wants next needs no
                // telling: the sets are rebuilt from every connection's interest each turn.
                event_loop.on_ready(fd, found);
            }
            if listener_ready {
                event_loop.accept(|_, _| Ok(()))?;
            }
            event_loop.sweep_timeouts(|_| {});
        }
        event_loop.close_all();
        Ok(())
    }
}

/// A select timeout, rounded up to whole microseconds so the loop does not wake early and spin;
/// capped at a day (the loop simply waits again), far inside what a `timeval` holds.
fn timeval(d: Duration) -> TimeVal {
    let micros = d.min(Duration::from_secs(86_400)).as_nanos().div_ceil(1000);
    TimeVal::microseconds(micros as i64)
}
