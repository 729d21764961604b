//! `epoll-lt` — one thread, one epoll instance, level-triggered: the kernel keeps the interest
//! list, and each wait returns only the sockets that are ready.
//!
//! Syscalls, in order: `epoll_create1`; `epoll_ctl(ADD)` for the shutdown eventfd and the
//! listener. Then the loop: `epoll_wait` (timeout: the next idle deadline) returns the ready
//! descriptors; the listener's readiness means `accept4` until EAGAIN, each new socket
//! `epoll_ctl(ADD, EPOLLIN)`; a connection's readiness means one `read` (then `write` of the
//! reply) or a `write` of pending output. When a connection's interest changes — output left
//! unsent (want EPOLLOUT too), output over the cap (stop EPOLLIN), everything sent (back to
//! EPOLLIN) — one `epoll_ctl(MOD)`; only then. `close` removes a socket from the interest list.
//!
//! Level-triggered (水平触发) means the kernel reports a descriptor in every `epoll_wait` for as
//! long as it is ready, exactly like `poll`. So one `read` per report is enough — the rest is
//! reported again next time — and a connection left with unread input is never forgotten. The
//! price: watching EPOLLOUT on a socket that is writable but has nothing to send would wake the
//! loop on every turn, which is why the interest is switched off again once output drains. Out
//! of descriptors the listener stays readable just as forever, so it is switched off too
//! (`EPOLL_CTL_DEL`, and ADD again) until a connection closes or 50 ms pass.
//!
//! Cost: one `epoll_wait` per turn, O(ready) rather than O(watched) — the kernel's wait queue
//! callbacks put a socket on the ready list when a packet arrives, so 10 000 idle connections
//! cost nothing per turn (compare `poll`, which hands the kernel all 10 000 every time). An
//! `epoll_ctl` costs a syscall, though, which is why MOD is issued only on change. Memory: the
//! kernel's `epitem` (kernel memory, not in PSS) and our table entry per connection.
//! Where it breaks: nowhere in particular at C10K; one thread still means one core — compare
//! `epoll-et` (fewer wake-ups per byte) and the multi-threaded models.
//!
//! The note: notes/epoll-lt.md.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::server::conn::{Interest, Step};
use crate::server::event_loop::{EventLoop, millis};
use crate::server::model::{Model, ServeContext};

/// Readiness reports fetched per `epoll_wait`; more ready descriptors wait for the next call.
const MAX_EVENTS: usize = 256;

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
        run(ctx, EpollFlags::empty(), || {})
    }
}

/// The loop itself, shared with `epoll-reuseport` and `epoll-exclusive`, which run one per
/// thread: `listener_flags` are added to the listener's registration (EPOLLEXCLUSIVE), and
/// `on_accept` hears of every connection accepted (their per-worker meter).
pub fn run(
    ctx: ServeContext,
    listener_flags: EpollFlags,
    mut on_accept: impl FnMut(),
) -> io::Result<()> {
    let mut lp = EventLoop::new(ctx, None)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // Each report carries the descriptor number: the table's index.
    let listener = lp.listener().as_raw_fd();
    let shutdown = lp.shutdown_fd().as_raw_fd();
    let listen = event(EpollFlags::EPOLLIN | listener_flags, listener);
    epoll.add(lp.shutdown_fd(), event(EpollFlags::EPOLLIN, shutdown))?;
    epoll.add(lp.listener(), listen)?;
    let mut watching_listener = true;
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];

    while !lp.shutdown_requested() {
        if lp.accepting() != watching_listener {
            watching_listener = !watching_listener;
            // Off with DEL and on with ADD (rather than MOD to no events): an EPOLLEXCLUSIVE
            // registration cannot be modified, only removed and added again.
            if watching_listener {
                epoll.add(lp.listener(), listen)?;
            } else {
                epoll.delete(lp.listener())?;
            }
        }
        let n = match epoll.wait(&mut events, millis(lp.timeout())) {
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
                lp.accept(|s| {
                    epoll.add(s, event(EpollFlags::EPOLLIN, s.as_raw_fd()))?;
                    on_accept();
                    Ok(())
                })?;
                continue;
            }
            let flags = ev.events();
            let readable = flags.intersects(
                EpollFlags::EPOLLIN
                    | EpollFlags::EPOLLRDHUP
                    | EpollFlags::EPOLLHUP
                    | EpollFlags::EPOLLERR,
            );
            let before = lp.interest(fd);
            // One read per report: level-triggered, the rest will be reported again.
            if lp.on_ready(fd, readable, flags.contains(EpollFlags::EPOLLOUT), 1) == Step::Done {
                continue; // close(2) took it off the interest list
            }
            let after = lp.interest(fd);
            if after != before
                && let Some((socket, after)) = lp.socket(fd).zip(after)
                && epoll
                    .modify(socket, &mut event(flags_for(after), fd))
                    .is_err()
            {
                lp.close(fd); // ENOMEM: better one connection lost than the server
            }
        }
        lp.sweep_idle(|_| {});
    }
    lp.close_all();
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
