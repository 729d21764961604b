//! `epoll-lt` — one thread, one epoll instance, level-triggered: the kernel keeps the interest
//! list, and each wait returns only the sockets that are ready.
//!
//! Syscalls, in order: `epoll_create1`; `epoll_ctl(ADD, EPOLLIN)` for the shutdown eventfd and
//! the listener. Then the loop:
//! - `epoll_wait` (timeout: the next idle deadline, [`EventLoop::timeout`]) returns up to
//!   [`MAX_EVENTS`] ready descriptors;
//! - the listener ready: `accept4` until EAGAIN or [`ACCEPT_BUDGET`] connections, whichever
//!   comes first ([`EventLoop::accept`]), each new socket `epoll_ctl(ADD, EPOLLIN)`;
//! - a connection ready: one `read`, then a `write` of the reply; or, writable only, a `write`
//!   of pending output ([`EventLoop::on_ready`]). When what it waits for changes — output left
//!   unsent (EPOLLOUT too), output over the cap (EPOLLIN off), everything sent (EPOLLIN only) —
//!   one `epoll_ctl(MOD)`; only then. A finished connection's `close` takes it off the
//!   interest list by itself.
//!
//! Level-triggered (水平触发) means the kernel reports a descriptor in every `epoll_wait` for as
//! long as it is ready, exactly like `poll`. So one `read` per report is enough — the rest is
//! reported again next time — and a connection left with unread input is never forgotten. For
//! the same reason the loop needs no EPOLLRDHUP: the peer's FIN keeps the socket readable until
//! a `read` returns 0. (EPOLLHUP and EPOLLERR are reported without being asked for; the `read`
//! then meets the end or the error.) The price: watching EPOLLOUT on a socket that is writable
//! but has nothing to send would wake the loop on every turn, which is why the interest is
//! switched off again once output drains. Out of descriptors the listener stays readable for
//! as long as a connection waits in its queue, so it is switched off too (`epoll_ctl(DEL)`, and ADD again) until a connection
//! closes or [`EXHAUSTED_BACKOFF`] passes.
//!
//! Cost: one `epoll_wait` per turn, O(ready) rather than O(watched) — the kernel's wait queue
//! callbacks put a socket on the ready list when a packet arrives, so 10 000 idle connections
//! cost nothing per turn (compare `poll`, which hands the kernel all 10 000 every time). An
//! `epoll_ctl` costs a syscall, though, which is why MOD is issued only on change. Memory: the
//! kernel's `epitem` (kernel memory, not in PSS) and our table entry per connection.
//! Where it breaks: nowhere in particular at C10K; one thread still means one core — compare
//! `epoll-et` (fewer wake-ups per byte) and the multi-threaded models, `epoll-reuseport` and
//! `epoll-exclusive`, which run this very loop on several threads ([`run`], [`ListenerWatch`]).
//!
//! The note: notes/epoll-lt.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::server::conn::{Interest, Ready};
#[cfg(doc)]
use crate::server::event_loop::ACCEPT_BUDGET;
use crate::server::event_loop::{EventLoop, FdLimit, Want, poll_timeout};
use crate::server::model::{Model, ServeContext};
#[cfg(doc)]
use crate::server::net::EXHAUSTED_BACKOFF;

/// Readiness reports fetched per `epoll_wait`; more ready descriptors wait for the next call.
pub const MAX_EVENTS: usize = 256;

/// Serves every connection from one thread on a level-triggered epoll instance.
pub struct EpollLt;

impl Model for EpollLt {
    fn name(&self) -> &'static str {
        "epoll-lt"
    }

    fn summary(&self) -> &'static str {
        "one thread, epoll level-triggered; interest switched between read and write"
    }

    fn serve(&self, ctx: ServeContext) -> io::Result<()> {
        run(ctx, ListenerWatch::Plain)
    }
}

/// How the loop's epoll instance watches the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerWatch {
    /// Plainly: this loop is the listener's only watcher (`epoll-lt`, and each loop of
    /// `epoll-reuseport`, which has a listener of its own).
    Plain,
    /// With EPOLLEXCLUSIVE: several loops watch the same listener and a connection wakes one
    /// of them (`epoll-exclusive`).
    Exclusive,
}

/// The loop: serves from `ctx` until shutdown.
pub fn run(ctx: ServeContext, watch: ListenerWatch) -> io::Result<()> {
    let mut event_loop = EventLoop::new(ctx, FdLimit::None)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // Each report carries the descriptor number: the table's index.
    let shutdown = event_loop.shutdown_fd().as_raw_fd();
    let listener = event_loop.listener().as_raw_fd();
    let listen = match watch {
        ListenerWatch::Plain => event(EpollFlags::EPOLLIN, listener),
        ListenerWatch::Exclusive => {
            event(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, listener)
        }
    };
    epoll.add(
        event_loop.shutdown_fd(),
        event(EpollFlags::EPOLLIN, shutdown),
    )?;
    epoll.add(event_loop.listener(), listen)?;
    let mut watching_listener = true;
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];

    while !event_loop.shutdown_requested() {
        if event_loop.accepting() != watching_listener {
            watching_listener = !watching_listener;
            // Off with DEL and on with ADD (rather than MOD to no events): an EPOLLEXCLUSIVE
            // registration cannot be modified, only removed and added again.
            if watching_listener {
                epoll.add(event_loop.listener(), listen)?;
            } else {
                epoll.delete(event_loop.listener())?;
            }
        }
        let n = match epoll.wait(&mut events, poll_timeout(event_loop.timeout())) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let fd = ev.data() as RawFd;
            if fd == shutdown {
                continue; // the loop's condition sees it
            }
            if fd == listener {
                event_loop.accept(|socket, interest| {
                    Ok(epoll.add(socket, event(flags_for(interest), socket.as_raw_fd()))?)
                })?;
                continue;
            }
            let flags = ev.events();
            let ready = Ready {
                readable: flags
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR),
                writable: flags.contains(EpollFlags::EPOLLOUT),
                peer_closed: false,
            };
            match event_loop.on_ready(fd, ready) {
                Want::Unchanged | Want::Closed => {}
                Want::Changed { socket, interest } => {
                    if epoll
                        .modify(socket, &mut event(flags_for(interest), fd))
                        .is_err()
                    {
                        event_loop.close(fd); // ENOMEM: better one connection lost than the server
                    }
                }
            }
        }
        event_loop.sweep_timeouts(|_| {});
    }
    event_loop.close_all();
    Ok(())
}

/// An epoll registration for `fd` with its number as the report's data.
fn event(flags: EpollFlags, fd: RawFd) -> EpollEvent {
    EpollEvent::new(flags, fd as u64)
}

/// The epoll events that a connection's interest asks for.
fn flags_for(interest: Interest) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}
